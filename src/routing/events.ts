// The events a shop's webhook receives, derived from each change of a decision just before it is applied (so the
// state still shows what the change is about: the session it closes, the queue place it leaves). The desk records
// them as `emit` changes right behind their cause, in the same journal batch: an outbox that commits or fails with
// the change that caused it. Pure: no clock, no I/O.
import { transcriptId } from '../domain/archive.js';
import { BOT, type Change, type ShopEvent, type ShopState } from './state.js';

export interface EventOptions {
  /** Every message too (visitor, agent and bot lines), not only the session's milestones. */
  messages: boolean;
}

const messageId = (id: string | undefined) => (id ? { messageId: id } : {});

/** The events one change makes, read from the state before it is applied; none when the change would do nothing. */
export function eventsOf(st: ShopState, c: Change, opts: EventOptions): ShopEvent[] {
  const sessionOf = (v: string, startedAt: number) => st.transcripts.get(v)?.id ?? transcriptId(st.shop, v, startedAt);
  const group = (g: string | undefined) => (g ? { group: g } : {});
  switch (c.op) {
    case 'open': {
      const session = sessionOf(c.v, c.at);
      // No transcript yet: a new session, served at once (a waiting or left one was opened when it began).
      const opened: ShopEvent[] = st.transcripts.has(c.v)
        ? []
        : [{ type: 'session.opened', at: c.at, visitor: c.v, session, ...group(c.g) }];
      return [...opened, { type: 'session.assigned', at: c.at, visitor: c.v, session, agent: c.agent, ...group(c.g) }];
    }
    case 'enqueue':
      if (st.queue.has(c.v) || st.transcripts.has(c.v)) return [];
      return [{ type: 'session.opened', at: c.at, visitor: c.v, session: sessionOf(c.v, c.at), waiting: true, ...group(c.g) }];
    case 'move': {
      const s = st.sessions.get(c.v);
      if (!s) return [];
      const e: ShopEvent = { type: 'session.transferred', at: c.at, visitor: c.v, session: sessionOf(c.v, s.startedAt), agent: c.agent };
      return [{ ...e, from: s.agent, ...group(c.g), ...(c.reason ? { reason: c.reason } : {}) }];
    }
    case 'close': {
      const s = st.sessions.get(c.v);
      if (!s) return [];
      const at = c.at ?? Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
      return [
        { type: 'session.closed', at, visitor: c.v, session: sessionOf(c.v, s.startedAt), agent: s.agent, reason: c.reason ?? 'agent' },
      ];
    }
    case 'rate': {
      const due = st.ratingDue.get(c.v);
      return due ? [{ type: 'session.rated', at: c.at, visitor: c.v, session: due.id, score: c.score }] : [];
    }
    case 'leave': {
      if (st.left.has(c.v) || st.sessions.has(c.v)) return [];
      const session = sessionOf(c.v, c.at);
      const since = st.queue.get(c.v);
      if (since === undefined) return [{ type: 'message.left', at: c.at, visitor: c.v, session, reason: c.reason, ...group(c.g) }];
      // Out of the queue: an abandoned wait, as long as apply() counts it.
      const waitedMs = Math.max(0, c.at - (st.transcripts.get(c.v)?.queuedAt ?? since));
      const g = st.queueGroup.get(c.v);
      return [{ type: 'session.abandoned', at: c.at, visitor: c.v, session, reason: c.reason, waitedMs, ...group(g) }];
    }
    case 'said': {
      const s = st.sessions.get(c.v);
      if (!opts.messages || !s) return [];
      const by = c.by === 'visitor' ? 'visitor' : s.agent === BOT ? 'bot' : 'agent';
      const session = sessionOf(c.v, s.startedAt);
      return [{ type: 'message', at: c.at, visitor: c.v, session, agent: s.agent, by, text: c.text ?? '', ...messageId(c.id) }];
    }
    case 'keep': {
      // A waiting (or left) visitor's message: its session is the transcript keep() starts or continues.
      if (!opts.messages) return [];
      const session = sessionOf(c.v, c.at);
      return [{ type: 'message', at: c.at, visitor: c.v, session, by: 'visitor', text: c.text ?? '', ...messageId(c.id) }];
    }
    case 'revoke': {
      // A message taken back by its sender: the receiver of `message` events learns which (messageId), as a client does.
      const session = st.transcripts.get(c.v)?.id;
      if (!opts.messages || !session) return [];
      const agent = st.sessions.get(c.v)?.agent;
      return [{ type: 'message.revoked', at: c.at, visitor: c.v, session, by: c.by, messageId: c.id, ...(agent ? { agent } : {}) }];
    }
    default:
      return [];
  }
}
