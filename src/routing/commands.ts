
import { AGENT_STATUSES, type AgentStatus, } from '../domain/shop.js';
import { bareJid } from '../xmpp/jid.js';
import { findChild, textOf, type XmlElement } from '../xmpp/xml.js';

/** `/status dnd|standard|always-on`; anything else is an ordinary message. */
export function statusCommand(stanza: XmlElement): AgentStatus | undefined {
  const body = findChild(stanza, 'body');
  const m = body && /^\/status\s+(\S+)\s*$/.exec(textOf(body).trim());
  return m && AGENT_STATUSES.includes(m[1] as AgentStatus) ? (m[1] as AgentStatus) : undefined;
}

/** Agent commands any XMPP client can type: `/close` (or `/end`), `/transfer <agent>|#<group> [reason]`. */
export function parseCommand(
  text: string,
  shopJid: string,
):
  | { name: 'close' }
  | { name: 'transfer'; to: string; reason: string }
  | { name: 'transfer-group'; group: string; reason: string }
  | undefined {
  const m = /^\/(close|end|transfer)(?:\s+(\S+))?(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (!m) return undefined;
  if (m[1] !== 'transfer') return { name: 'close' };
  if (!m[2]) return undefined;
  if (m[2].startsWith('#') && m[2].length > 1) return { name: 'transfer-group', group: m[2].slice(1), reason: (m[3] ?? '').trim() };
  const to = m[2].includes('@') ? bareJid(m[2]) : `${m[2].toLowerCase()}@${shopJid.split('@')[1]}`;
  return { name: 'transfer', to, reason: (m[3] ?? '').trim() };
}
