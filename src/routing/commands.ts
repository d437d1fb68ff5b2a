// Agent commands any XMPP client can type in a message body, parsed in one place; src/routing/agent.ts
// runs every one of them. A body that is not exactly a command is an ordinary message.
//   /close | /end                       close the session
//   /transfer <agent> [reason]          hand the session to another agent of the shop
//   /transfer #<group> [reason]         hand it to whoever the group's strategy picks
//   /status standard|dnd|always-on      the agent's own seat status, in every shop it serves (also how an agent set
//                                       away for missed chats takes chats again: src/routing/answer.ts)
//   /sessions                           what the agent holds in this shop, and its missed chats (src/routing/agent-info.ts)
import { AGENT_STATUSES, type AgentStatus } from '../domain/shop.js';
import { bareJid } from '../xmpp/jid.js';
import { findChild, textOf, type XmlElement } from '../xmpp/xml.js';

export type AgentCommand =
  | { name: 'close' }
  | { name: 'transfer'; to: string; reason: string }
  | { name: 'transfer-group'; group: string; reason: string }
  | { name: 'status'; status: AgentStatus }
  | { name: 'sessions' };

/** The command in a message's body, if the body is one. */
export function agentCommand(stanza: XmlElement, shopJid: string): AgentCommand | undefined {
  const body = findChild(stanza, 'body');
  return body ? parseCommand(textOf(body), shopJid) : undefined;
}

export function parseCommand(text: string, shopJid: string): AgentCommand | undefined {
  const trimmed = text.trim();
  if (trimmed === '/sessions') return { name: 'sessions' };
  const status = /^\/status\s+(\S+)$/.exec(trimmed);
  if (status) return AGENT_STATUSES.includes(status[1] as AgentStatus) ? { name: 'status', status: status[1] as AgentStatus } : undefined;
  const m = /^\/(close|end|transfer)(?:\s+(\S+))?(?:\s+([\s\S]*))?$/.exec(trimmed);
  if (!m) return undefined;
  if (m[1] !== 'transfer') return { name: 'close' };
  if (!m[2]) return undefined;
  if (m[2].startsWith('#') && m[2].length > 1) return { name: 'transfer-group', group: m[2].slice(1), reason: (m[3] ?? '').trim() };
  const to = m[2].includes('@') ? bareJid(m[2]) : `${m[2].toLowerCase()}@${shopJid.split('@')[1]}`;
  return { name: 'transfer', to, reason: (m[3] ?? '').trim() };
}
