// JID helpers. Local part and domain compare case-insensitively (nodeprep/nameprep
// fold case); the resource is kept as is.
export function bareJid(jid: string): string {
  const slash = jid.indexOf('/');
  return (slash < 0 ? jid : jid.slice(0, slash)).toLowerCase();
}

export function domainOf(jid: string): string {
  const bare = bareJid(jid);
  return bare.slice(bare.indexOf('@') + 1);
}

const JID_RE = /^(?:[^@/\s"&'<>:]+@)?[^@/\s]+(?:\/.+)?$/;
export function isJid(value: string): boolean {
  return value.length > 0 && value.length <= 3071 && JID_RE.test(value);
}
