// Read access for an agent's own client, in band: the agent sends `/sessions` to a shop and gets
// back a notice (msgType 15, to the agent only) carrying a structured child, e.g.
//   <info xmlns='urn:xmpp:consult:agent:0' shop='shop_2@host' queue='3' status='standard' sessions='1' missed='2' missedInRow='1'>
//     <session visitor='v1@visitors.host' since='1700000000000' last='1700000060000'/>
//     (a visitor that sent context: its <context xmlns='urn:xmpp:consult:context:0'> inside the session element)
//   </info>
// `missed` counts the agent's chats in this shop that moved on unanswered (answer or move on), `missedInRow` those
// since its last answer in time; `left` and `abandoned` the shop's left messages waiting and its waits that ended
// without an agent (src/routing/left.ts). Who asks is XMPP's own (server-checked) from; an agent sees only the sessions it holds and the
// length of the queue, nothing about other agents' visitors. The web agent console uses it; no
// admin token is involved. Read-only: nothing is journaled.
import type { Missed, Session } from './state.js';
import { QCHAT_TO_AGENT, notice } from '../xmpp/stanzas.js';
import { el, type XmlElement } from '../xmpp/xml.js';
import { contextElement, contextText, isEmptyContext, type VisitorContext } from '../domain/context.js';

export const NS_AGENT_INFO = 'urn:xmpp:consult:agent:0';
/** At most this many sessions are listed (an agent's maxSessions is far below it in practice). */
export const INFO_MAX_SESSIONS = 200;

export interface AgentInfo {
  shop: string;
  agent: string;
  status: string;
  queue: number;
  sessions: Session[]; // all of the shop's; only the agent's are listed
  now: number;
  /** The agent's missed chats in this shop; absent: not shown. */
  missed?: Missed;
  /** The shop's left messages waiting, and its abandoned waits so far (src/routing/left.ts); absent: not shown. */
  waiting?: { left: number; abandoned: number };
  /** A visitor's context (src/domain/context.ts), listed with its session; absent: none shown. */
  contextOf?: (visitor: string) => VisitorContext | undefined;
}

export function agentInfo(i: AgentInfo): XmlElement {
  const mine = i.sessions.filter((s) => s.agent === i.agent).sort((a, b) => a.startedAt - b.startedAt);
  const listed = mine.slice(0, INFO_MAX_SESSIONS);
  const info = el(
    'info',
    {
      xmlns: NS_AGENT_INFO,
      shop: i.shop,
      queue: String(i.queue),
      status: i.status,
      sessions: String(mine.length),
      ...(i.missed ? { missed: String(i.missed.total), missedInRow: String(i.missed.inRow) } : {}),
      ...(i.waiting ? { left: String(i.waiting.left), abandoned: String(i.waiting.abandoned) } : {}),
    },
    listed.map((s) => {
      const ctx = i.contextOf?.(s.visitor);
      return el(
        'session',
        {
          visitor: s.visitor,
          since: String(s.startedAt),
          last: String(Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt)),
        },
        isEmptyContext(ctx) ? [] : [contextElement(ctx!)],
      );
    }),
  );
  const missed = i.missed ? `, ${i.missed.total} missed (${i.missed.inRow} in a row)` : '';
  // A line per session with a context, for plain clients (none: the text is as before).
  const about = listed.map((s) => [s.visitor, contextText(i.contextOf?.(s.visitor))]).filter(([, t]) => t);
  const text = [
    `${mine.length} open session${mine.length === 1 ? '' : 's'}, ${i.queue} waiting${missed}`,
    ...about.map(([v, t]) => `${v}: ${t}`),
  ].join('\n');
  const out = notice({ shop: i.shop, to: i.agent, realfrom: i.shop, qchatid: QCHAT_TO_AGENT, now: i.now, text });
  out.children.push(info);
  return out;
}
