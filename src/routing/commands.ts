// Agent commands any XMPP client can type in a message body, parsed in one place; src/routing/agent.ts
// runs every one of them. A body that is not exactly a command is an ordinary message.
//   /close | /end                       close the session
//   /transfer <agent> [reason]          hand the session to another agent of the shop
//   /transfer #<group> [reason]         hand it to whoever the group's strategy picks
//   /status standard|dnd|always-on      the agent's own seat status, in every shop it serves (also how an agent set
//                                       away for missed chats takes chats again: src/routing/answer.ts)
//   /sessions                           what the agent holds in this shop, and its missed chats (src/routing/agent-info.ts)
//   /history [<visitor>]                earlier sessions of the visitor (default: the session's), from the archive
//                                       (src/routing/history.ts)
//   #<name> | /reply <name>             the shop's canned reply <name> goes to the visitor as the agent's message
//                                       (src/routing/canned.ts); exactly '#' and a name (a letter first, no spaces):
//                                       "#1 question" or "#2" stay ordinary messages
//   /canned                             the canned replies the agent may send, listed to it alone
//   /tag <label> [<label> …]            tag the session (archived; GET /archive?tag= finds it) (src/routing/notes.ts)
//   /untag [<label> …]                  remove those tags (without a label: all of them)
//   /note <text>                        a note in the session's transcript; never reaches the visitor
// and the shop's supervisors' (src/routing/supervisor.ts); <visitor> is a bare JID or a local part of the shop's domain:
//   /live                               the shop's open sessions and its queue
//   /monitor <visitor>                  a copy of both directions of that session, until
//   /unmonitor [<visitor>]              (without a visitor: every session it watches)
//   /whisper <visitor> <text>           to the session's agent only; the visitor never sees it
//   /takeover <visitor>                 the session moves to the supervisor, who serves it as its agent
import { AGENT_STATUSES, type AgentStatus } from '../domain/shop.js';
import { TAG_LABEL, TAG_LABEL_RULE } from '../domain/archive.js';
import { CANNED_NAME, CANNED_NAME_RULE } from '../domain/canned.js';
import { bareJid } from '../xmpp/jid.js';
import { findChild, textOf, type XmlElement } from '../xmpp/xml.js';

export type AgentCommand =
  | { name: 'close' }
  | { name: 'transfer'; to: string; reason: string }
  | { name: 'transfer-group'; group: string; reason: string }
  | { name: 'status'; status: AgentStatus }
  | { name: 'sessions' }
  | { name: 'history'; visitor?: string } // none: the visitor of the agent's session
  | { name: 'canned'; reply: string }
  | { name: 'canned-list' }
  | { name: 'tag'; labels: string[] }
  | { name: 'untag'; labels: string[] } // none: every tag
  | { name: 'note'; text: string }
  // One of the commands above, written wrong: refused with this text, never relayed to the visitor.
  | { name: 'invalid'; text: string };

export type SupervisorCommand =
  | { name: 'live' }
  | { name: 'monitor'; visitor: string }
  | { name: 'unmonitor'; visitor?: string }
  | { name: 'whisper'; visitor: string; text: string }
  | { name: 'takeover'; visitor: string };

/** The supervisor command in a message's body, if the body is one. */
export function supervisorCommand(stanza: XmlElement, shopJid: string): SupervisorCommand | undefined {
  const body = findChild(stanza, 'body');
  return body ? parseSupervisorCommand(textOf(body), shopJid) : undefined;
}

export function parseSupervisorCommand(text: string, shopJid: string): SupervisorCommand | undefined {
  const trimmed = text.trim();
  if (trimmed === '/live') return { name: 'live' };
  if (trimmed === '/unmonitor') return { name: 'unmonitor' };
  const m = /^\/(monitor|unmonitor|takeover|whisper)\s+(\S+)(?:\s+([\s\S]*))?$/.exec(trimmed);
  if (!m) return undefined;
  const visitor = jidIn(m[2], shopJid);
  const rest = (m[3] ?? '').trim();
  if (m[1] === 'whisper') return rest ? { name: 'whisper', visitor, text: rest } : undefined;
  if (rest) return undefined;
  return m[1] === 'monitor'
    ? { name: 'monitor', visitor }
    : m[1] === 'unmonitor'
      ? { name: 'unmonitor', visitor }
      : { name: 'takeover', visitor };
}

/** A bare JID as typed, or a local part taken in the shop's domain. */
function jidIn(word: string, shopJid: string): string {
  return word.includes('@') ? bareJid(word) : `${word.toLowerCase()}@${shopJid.split('@')[1]}`;
}

/** The command in a message's body, if the body is one. */
export function agentCommand(stanza: XmlElement, shopJid: string): AgentCommand | undefined {
  const body = findChild(stanza, 'body');
  return body ? parseCommand(textOf(body), shopJid) : undefined;
}

export function parseCommand(text: string, shopJid: string): AgentCommand | undefined {
  const trimmed = text.trim();
  if (trimmed === '/sessions') return { name: 'sessions' };
  const history = /^\/history(?:\s+(\S+))?$/.exec(trimmed);
  if (history) return history[1] ? { name: 'history', visitor: jidIn(history[1], shopJid) } : { name: 'history' };
  const own = cannedOrNotes(trimmed);
  if (own) return own;
  const status = /^\/status\s+(\S+)$/.exec(trimmed);
  if (status) return AGENT_STATUSES.includes(status[1] as AgentStatus) ? { name: 'status', status: status[1] as AgentStatus } : undefined;
  const m = /^\/(close|end|transfer)(?:\s+(\S+))?(?:\s+([\s\S]*))?$/.exec(trimmed);
  if (!m) return undefined;
  if (m[1] !== 'transfer') return { name: 'close' };
  if (!m[2]) return undefined;
  if (m[2].startsWith('#') && m[2].length > 1) return { name: 'transfer-group', group: m[2].slice(1), reason: (m[3] ?? '').trim() };
  return { name: 'transfer', to: jidIn(m[2], shopJid), reason: (m[3] ?? '').trim() };
}

/** `#name`, `/reply`, `/canned`, `/tag`, `/untag` and `/note`, or undefined when the text is none of them. */
function cannedOrNotes(trimmed: string): AgentCommand | undefined {
  const hash = /^#([A-Za-z][A-Za-z0-9_-]{0,31})$/.exec(trimmed);
  if (hash) return { name: 'canned', reply: hash[1].toLowerCase() };
  if (trimmed === '/canned') return { name: 'canned-list' };
  const m = /^\/(reply|tag|untag|note)(?:\s+([\s\S]*))?$/.exec(trimmed);
  if (!m) return undefined;
  const rest = (m[2] ?? '').trim();
  const words = rest ? rest.split(/\s+/) : [];
  switch (m[1]) {
    case 'reply': {
      const name = (words[0] ?? '').toLowerCase();
      return words.length === 1 && CANNED_NAME.test(name)
        ? { name: 'canned', reply: name }
        : { name: 'invalid', text: `/reply takes one canned reply name (${CANNED_NAME_RULE}); /canned lists them` };
    }
    case 'note':
      return rest ? { name: 'note', text: rest } : { name: 'invalid', text: '/note takes a text: /note <text>' };
    default: {
      const labels = [...new Set(words.map((w) => w.toLowerCase()))];
      const bad = labels.find((l) => !TAG_LABEL.test(l));
      if (bad !== undefined) return { name: 'invalid', text: `${bad} is not a tag: a tag is ${TAG_LABEL_RULE}` };
      if (m[1] === 'tag' && labels.length === 0) return { name: 'invalid', text: '/tag takes a label: /tag <label>' };
      return m[1] === 'tag' ? { name: 'tag', labels } : { name: 'untag', labels };
    }
  }
}
