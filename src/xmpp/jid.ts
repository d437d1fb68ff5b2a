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

// RFC 7622: each part 1..1023 bytes of UTF-8; no control characters anywhere; no spaces or "&'/:<>@ in the
// local part; the domain is dot-separated non-empty labels. (@xmpp/jid parses and escapes but checks none of this.)
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LOCAL_FORBIDDEN = /[\s"&'/:<>@]/;
const LABEL = /^[^\s@/.]+$/;
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const partOk = (s: string) => s.length > 0 && bytes(s) <= 1023 && !CONTROL.test(s);

export function isJid(value: string): boolean {
  const slash = value.indexOf('/');
  const bare = slash < 0 ? value : value.slice(0, slash);
  if (slash >= 0 && !partOk(value.slice(slash + 1))) return false;
  const at = bare.indexOf('@');
  const local = at < 0 ? undefined : bare.slice(0, at);
  const domain = at < 0 ? bare : bare.slice(at + 1);
  if (local !== undefined && (!partOk(local) || LOCAL_FORBIDDEN.test(local))) return false;
  const labels = domain.replace(/\.$/, '').split('.');
  return partOk(domain) && labels.every((l) => LABEL.test(l) && bytes(l) <= 63);
}
