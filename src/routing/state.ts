// A shop's live state, held in memory by the sidecar that decides for it, and the
// changes that move it. Every change is applied by `apply` — when a decision makes it,
// and again when the journal is replayed after a restart — so memory and the durable
// journal can never disagree about what a change means.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { archiveRecord, newTranscript, type ArchiveRecord, type CloseReason, type Line, type Transcript } from '../domain/archive.js';
import type { Limits } from '../domain/shop.js';
import type { BodyFacts } from '../xmpp/message-kind.js';
import { findChild, parseElement } from '../xmpp/xml.js';
import { isEmptyContext, type VisitorContext } from '../domain/context.js';

/** The agent of a session the shop's bot serves (no JID has no '@'). */
export const BOT = 'robot';

export interface Session {
  visitor: string;
  shop: string;
  agent: string;
  startedAt: number;
  lastVisitorAt: number; // 0 = never
  lastAgentAt: number;
  /** When the agent was last reminded of an unanswered visitor (0 = not yet for the current message). */
  remindedAt: number;
  /** When the agent went offline with this session open (0 = agent online). */
  orphanedAt: number;
  /** The groups it was routed to, comma-joined ('' or absent: any agent of the shop). */
  group?: string;
  /** When it joined the queue, if it waited before being served (absent: startedAt): its place should it wait again. */
  arrivedAt?: number;
  /** When its agent's answer clock started (given the session, nothing sent since); absent: no clock runs. */
  answerClockAt?: number;
  /** How often it moved on because its agent did not answer in time (the visitor is told the first time only). */
  silentMoves?: number;
  /** Supervisors who get a copy of both directions (absent: none). */
  monitors?: string[];
}

/** An agent's chats that moved on unanswered in a shop: in a row (since its last answer in time), and in all. */
export interface Missed {
  inRow: number;
  total: number;
}

/** Why a visitor's kept messages wait as a left message: the shop was closed, it waited too long, it left the queue. */
export type LeftReason = 'closed' | 'timeout' | 'left';
export const LEFT_REASONS: readonly LeftReason[] = ['closed', 'timeout', 'left'];

/** A visitor's left message: its kept messages (in `kept`) wait for an agent while nobody will serve it now. */
export interface LeftMessage {
  at: number; // when it was left: left messages are handed out oldest first
  reason: LeftReason;
  g: string; // the group key it was for ('' any agent)
  /** It came from the queue after waiting this long: an abandoned wait. */
  waitedMs?: number;
}

/** Abandoned waits of one reason and group key: how many, and how long they waited in all. */
export interface Abandoned {
  count: number;
  waitMs: number;
}
export const abandonedKey = (reason: LeftReason, group: string) => `${reason}\n${group}`;

/** When a visitor first came (joined the queue, or was served at once): its place should it wait again. */
export function arrivalOf(s: Session): number {
  return s.arrivedAt ?? s.startedAt;
}

/** A stanza kept for later: a waiting visitor's message, or a relayed one in a session's history. */
export interface Stored {
  at: number;
  xml: string;
}

/**
 * A kept message's identity in a `release`: its arrival time and a digest of its XML. A release names what reached
 * the agent by identity, not by position, because a revoke can take a message out of `kept` while it is on its way.
 */
export function keptId(m: Stored): string {
  return `${m.at}:${createHash('sha256').update(m.xml).digest('base64url').slice(0, 16)}`;
}

/** What a shop's webhook is told (src/routing/events.ts derives them from a decision's changes; docs/behaviour.md). */
export type EventType =
  | 'session.opened'
  | 'session.assigned'
  | 'session.transferred'
  | 'session.closed'
  | 'session.rated'
  | 'message.left'
  | 'session.abandoned'
  | 'message'
  | 'message.revoked';
export interface ShopEvent {
  type: EventType;
  at: number;
  visitor: string;
  /** The session's id: its archive record's. */
  session: string;
  agent?: string; // assigned, transferred (the new one), closed, message
  from?: string; // transferred: the agent it left
  group?: string;
  reason?: string; // transferred, closed, left, abandoned
  score?: number; // rated
  waitedMs?: number; // abandoned
  waiting?: true; // opened into the queue
  by?: 'visitor' | 'agent' | 'bot'; // message, message.revoked
  text?: string; // message
  messageId?: string; // message (its body id), message.revoked (the message taken back)
}

/** Written to the archive store once durable, then dropped by an `archived` change. */
export type Unarchived = { kind: 'session'; record: ArchiveRecord } | { kind: 'rating'; id: string; score: number; at: number };

// Fields marked ? came with groups, the bot and the archive: journals written before them lack them.
export type Change =
  // since: its place in the queue it left; clock: the agent's answer clock starts (answer or move on)
  | { op: 'open'; v: string; agent: string; at: number; g?: string; since?: number; clock?: true }
  // id, msgType, urls: what the transcript line keeps of the body besides its text (src/xmpp/message-kind.ts)
  | ({ op: 'said'; v: string; by: 'visitor' | 'agent'; at: number; xml: string; text?: string } & BodyFacts)
  | { op: 'remind'; v: string; at: number }
  | { op: 'orphan'; v: string; at: number } // at 0: the agent is back
  // clock: the new agent's answer clock starts; missed: the agent it leaves did not answer in time (a missed chat)
  | { op: 'move'; v: string; agent: string; at: number; g?: string; reason?: string; clock?: true; missed?: true }
  | { op: 'close'; v: string; stickyUntil: number; at?: number; reason?: CloseReason; rateUntil?: number }
  // The agent (or bot) is gone: the visitor waits again, history kept. With `since` it keeps its place by that arrival
  // time; without (a hand-over from the bot, and journals written before) it joins at the back.
  | { op: 'requeue'; v: string; at: number; note?: string; since?: number }
  | { op: 'enqueue'; v: string; at: number; g?: string }
  | { op: 'dequeue'; v: string }
  | ({ op: 'keep'; v: string; at: number; xml: string; text?: string } & BodyFacts)
  // A QChat revoke of message `id` by its sender: its line is marked revoked; a waiting visitor's kept message goes;
  // xml: the relayed revoke, which takes the message's place in the history; keep: the revoke (xml) waits in `kept`
  // behind the visitor's messages still on their way to the agent (src/routing/revoke.ts)
  | { op: 'revoke'; v: string; id: string; by: 'visitor' | 'agent'; at: number; xml?: string; keep?: true }
  // These kept messages reached the agent: `ids` (keptId) name them; without (journals written before), the first n
  | { op: 'release'; v: string; n: number; relayed: Stored[]; ids?: string[] }
  | { op: 'rate'; v: string; score: number; at: number } // the visitor rated its last closed session
  | { op: 'archived'; keys: string[] } // these unarchived entries are in the archive store
  | { op: 'emit'; e: ShopEvent } // an event for the shop's webhook, numbered by the shop's event sequence
  | { op: 'delivered'; seqs: number[] } // the webhook acknowledged these events
  | { op: 'away'; agent: string; at: number } // set away for its missed chats: its count in a row starts again
  // Left messages: the visitor (new, or out of the queue: an abandoned wait, counted) waits without a place in the queue
  | { op: 'leave'; v: string; at: number; reason: LeftReason; g?: string }
  | { op: 'pickup'; v: string } // its left message is taken: an agent gets it (an open follows), or the visitor is back
  | { op: 'discard'; v: string } // an admin closed its left message: its kept messages and transcript go
  | { op: 'monitor'; v: string; who: string; on: boolean } // a supervisor starts (on) or stops watching a session
  | { op: 'context'; v: string; ctx: VisitorContext } // the visitor's context as it is now (src/routing/context.ts)
  | { op: 'tag'; v: string; label: string; on: boolean } // an agent tags (on) or untags its open session
  | { op: 'note'; v: string; who: string; at: number; text: string } // an agent's note: archived, never at the visitor
  | { op: 'whisper'; v: string; who: string; at: number; text: string } // a supervisor to the session's agent only
  | { op: 'forget'; v: string }; // erasure: everything the shop's state holds of the visitor goes (src/routing/forget.ts)

export type Undo = () => void;
interface Sticky {
  agent: string;
  until: number;
}

export class ShopState {
  readonly sessions = new Map<string, Session>(); // by visitor
  readonly byAgent = new Map<string, Set<string>>(); // agent → visitors it serves
  /**
   * Waiting visitors → when they arrived, in the order they are served: a Map iterates in insertion order. New
   * visitors join at the back; a visitor whose agent is gone goes back to its place by arrival (`requeue` since).
   */
  readonly queue = new Map<string, number>();
  readonly kept = new Map<string, Stored[]>(); // by visitor: waiting, or not yet released to the agent
  readonly history = new Map<string, Stored[]>(); // by visitor, newest last
  readonly lastAssigned = new Map<string, number>(); // by agent (round-robin)
  /**
   * Returning visitors' last agent: a hint, bounded. Only peek() is used, so eviction follows insertion order,
   * as on replay. Expired entries are purged in memory only (purgeSticky): replay purges them again on load.
   */
  sticky: LRUCache<string, Sticky>;
  /** Waiting visitors → the groups they wait for (comma-joined; absent: any agent), and how many wait per key. */
  readonly queueGroup = new Map<string, string>();
  readonly waiting = new Map<string, number>();
  /** By visitor: the transcript of its open (or waiting) session, for the archive. */
  readonly transcripts = new Map<string, Transcript>();
  /** Closed sessions and ratings not yet in the archive store, by key. */
  readonly unarchived = new Map<string, Unarchived>();
  /** By visitor: its last closed session, which it may rate until `until`. */
  readonly ratingDue = new Map<string, { id: string; until: number }>();
  /** By agent: its missed chats in this shop (answer or move on). Values are replaced, never changed in place. */
  readonly missed = new Map<string, Missed>();
  /** By visitor, oldest first: left messages waiting for the shop to open (or for room). Their messages are in `kept`. */
  readonly left = new Map<string, LeftMessage>();
  /** Abandoned waits by abandonedKey(reason, group key). Values are replaced, never changed in place. */
  readonly abandoned = new Map<string, Abandoned>();
  /** Webhook events not yet delivered, by their number (ascending: a Map keeps insertion order), at most limits.outboxMax. */
  readonly outbox = new Map<number, ShopEvent>();
  /** The last event number given out: replay gives the same numbers, so an event's idempotency key survives a crash. */
  eventSeq = 0;
  /** Events a full outbox dropped, counted in memory only (replay counts again): the desk reports a decision's delta. */
  eventsDropped = 0;

  constructor(
    readonly shop: string,
    public limits: Limits,
  ) {
    this.sticky = new LRUCache({ max: limits.stickyMax });
  }

  /** An admin changed the shop's limits: they bound what comes next (a smaller sticky cap evicts at once). */
  setLimits(limits: Limits): void {
    if (limits.stickyMax !== this.limits.stickyMax) {
      const old = this.stickyOldestFirst();
      this.sticky = new LRUCache({ max: limits.stickyMax });
      for (const [v, s] of old) this.sticky.set(v, s);
    }
    this.limits = limits;
  }

  /** Roughly how much a snapshot holds (entries, not bytes): the journal compacts past twice this. */
  size(): number {
    return (
      this.sessions.size +
      this.queue.size +
      this.kept.size +
      this.history.size +
      this.sticky.size +
      this.transcripts.size +
      this.unarchived.size +
      this.left.size +
      this.outbox.size
    );
  }

  load(agent: string): number {
    return this.byAgent.get(agent)?.size ?? 0;
  }

  stickyAgent(visitor: string, now: number): string | undefined {
    const s = this.sticky.peek(visitor);
    return s && s.until > now ? s.agent : undefined;
  }

  stickyOldestFirst(): [string, Sticky][] {
    return [...this.sticky.rentries()] as [string, Sticky][];
  }

  /** Drops expired sticky hints (timers, and after loading). */
  purgeSticky(now: number): void {
    const expired = this.stickyOldestFirst()
      .filter(([, s]) => s.until <= now)
      .map(([v]) => v);
    for (const v of expired) this.sticky.delete(v);
  }

  /** How many visitors wait for this group key ('' = any agent). */
  waitingFor(key: string): number {
    return this.waiting.get(key) ?? 0;
  }

  /** Drops rating offers past their window (in memory only, like sticky hints: their `until` says it). */
  purgeRatings(now: number): void {
    for (const [v, r] of this.ratingDue) if (r.until <= now) this.ratingDue.delete(v);
  }

  /** The oldest waiting visitor. */
  head(): string | undefined {
    return this.queue.keys().next().value;
  }

  /** A waiting visitor's place (1 = next) among those waiting for the same group key; 0 when it does not wait. */
  positionOf(visitor: string): number {
    if (!this.queue.has(visitor)) return 0;
    const key = this.queueGroup.get(visitor) ?? '';
    let position = 1;
    for (const v of this.queue.keys()) {
      if (v === visitor) return position;
      if ((this.queueGroup.get(v) ?? '') === key) position++;
    }
    return position;
  }

  /** Who served a visitor last (an agent, or BOT), from its transcript; undefined when that is not known. */
  lastServedBy(visitor: string): string | undefined {
    return this.transcripts.get(visitor)?.agents.at(-1);
  }

  /**
   * A snapshot as JSON parts of at most about `maxChars` each: one record per session, queue place, kept or
   * history message, assignment and sticky hint, in an order that rebuilds the same state. Never one string of
   * the whole state: a big shop would pass V8's string limit.
   */
  snapshotParts(maxChars = 4 * 1024 * 1024): string[] {
    const parts: string[] = [];
    let current: string[] = [];
    let size = 0;
    const add = (record: SnapshotRecord) => {
      const json = JSON.stringify(record);
      if (current.length && size + json.length > maxChars) {
        parts.push(`[${current.join(',')}]`);
        current = [];
        size = 0;
      }
      current.push(json);
      size += json.length + 1;
    };
    for (const s of this.sessions.values()) add(['s', s]);
    for (const [v, at] of this.queue) add(['q', v, at, this.queueGroup.get(v) ?? '']);
    for (const [v, list] of this.kept) for (const m of list) add(['k', v, m.at, m.xml]);
    for (const [v, list] of this.history) for (const m of list) add(['h', v, m.at, m.xml]);
    for (const [a, at] of this.lastAssigned) add(['a', a, at]);
    for (const [v, s] of this.stickyOldestFirst()) add(['t', v, s.agent, s.until]);
    // Transcripts and archive records go line by line: one long conversation must not make one huge record.
    for (const [v, t] of this.transcripts) {
      add(['x', v, { ...t, lines: [] }]);
      for (const l of t.lines) add(['xl', v, l]);
    }
    for (const [k, u] of this.unarchived) {
      if (u.kind !== 'session') add(['u', k, u]);
      else {
        add(['u', k, { ...u, record: { ...u.record, lines: [] } }]);
        for (const l of u.record.lines) add(['ul', k, l]);
      }
    }
    for (const [v, r] of this.ratingDue) add(['r', v, r.id, r.until]);
    for (const [a, m] of this.missed) add(['m', a, m.inRow, m.total]);
    for (const [v, l] of this.left) add(['l', v, l]);
    for (const [k, a] of this.abandoned) add(['ab', k, a.count, a.waitMs]);
    if (this.eventSeq) add(['es', this.eventSeq]);
    for (const [seq, e] of this.outbox) add(['ev', seq, e]);
    parts.push(`[${current.join(',')}]`);
    return parts;
  }

  static fromParts(shop: string, limits: Limits, parts: string[]): ShopState {
    const st = new ShopState(shop, limits);
    const push = (map: Map<string, Stored[]>, v: string, m: Stored) => {
      const list = map.get(v);
      if (list) list.push(m);
      else map.set(v, [m]);
    };
    for (const part of parts) {
      for (const r of JSON.parse(part) as SnapshotRecord[]) {
        switch (r[0]) {
          case 's':
            st.sessions.set(r[1].visitor, { ...r[1], shop });
            serving(st, r[1].agent).add(r[1].visitor);
            break;
          case 'q':
            st.queue.set(r[1], r[2]);
            if (r[3]) setQueueGroup(st, r[1], r[3]);
            else addWaiting(st, '', 1);
            break;
          case 'x':
            st.transcripts.set(r[1], r[2]);
            break;
          case 'xl':
            st.transcripts.get(r[1])?.lines.push(r[2]);
            break;
          case 'u':
            st.unarchived.set(r[1], r[2]);
            break;
          case 'ul': {
            const u = st.unarchived.get(r[1]);
            if (u?.kind === 'session') u.record.lines.push(r[2]);
            break;
          }
          case 'r':
            st.ratingDue.set(r[1], { id: r[2], until: r[3] });
            break;
          case 'k':
            push(st.kept, r[1], { at: r[2], xml: r[3] });
            break;
          case 'h':
            push(st.history, r[1], { at: r[2], xml: r[3] });
            break;
          case 'a':
            st.lastAssigned.set(r[1], r[2]);
            break;
          case 't':
            st.sticky.set(r[1], { agent: r[2], until: r[3] });
            break;
          case 'l':
            st.left.set(r[1], r[2]);
            break;
          case 'es':
            st.eventSeq = r[1];
            break;
          case 'ev':
            st.outbox.set(r[1], r[2]);
            break;
          case 'ab':
            st.abandoned.set(r[1], { count: r[2], waitMs: r[3] });
            break;
          case 'm':
            st.missed.set(r[1], { inRow: r[2], total: r[3] });
            break;
        }
      }
    }
    return st;
  }

  static fromJSON(shop: string, limits: Limits, body: SnapshotBody): ShopState {
    const st = new ShopState(shop, limits);
    for (const s of body.sessions) {
      st.sessions.set(s.visitor, { ...s, shop });
      serving(st, s.agent).add(s.visitor);
    }
    for (const [v, at] of body.queue) {
      st.queue.set(v, at);
      addWaiting(st, '', 1);
    }
    for (const [v, list] of body.kept) st.kept.set(v, list);
    for (const [v, list] of body.history) st.history.set(v, list);
    for (const [a, at] of body.lastAssigned) st.lastAssigned.set(a, at);
    for (const [v, agent, until] of body.sticky) st.sticky.set(v, { agent, until });
    return st;
  }
}

type SnapshotRecord =
  | ['s', Session]
  | ['q', string, number, string?]
  | ['x', string, Transcript]
  | ['xl' | 'ul', string, Line]
  | ['u', string, Unarchived]
  | ['r', string, string, number]
  | ['k' | 'h', string, number, string]
  | ['a', string, number]
  | ['t', string, string, number]
  | ['l', string, LeftMessage]
  | ['ab', string, number, number]
  | ['es', number]
  | ['ev', number, ShopEvent]
  | ['m', string, number, number];

/** A whole shop's state in plain form (the version 1 migration builds it). */
export interface SnapshotBody {
  sessions: Session[];
  queue: [string, number][];
  kept: [string, Stored[]][];
  history: [string, Stored[]][];
  lastAssigned: [string, number][];
  sticky: [string, string, number][];
}

function serving(st: ShopState, agent: string): Set<string> {
  let set = st.byAgent.get(agent);
  if (!set) st.byAgent.set(agent, (set = new Set()));
  return set;
}

function unserve(st: ShopState, agent: string, visitor: string): void {
  const set = st.byAgent.get(agent);
  set?.delete(visitor);
  if (set?.size === 0) st.byAgent.delete(agent);
}

function restoreMap<V>(map: Map<string, V>, key: string, old: V | undefined): void {
  if (old === undefined) map.delete(key);
  else map.set(key, old);
}

/** Puts a key at a place in an insertion-ordered map (undo of a removal, a requeue; rare, so O(n) is fine). */
function reinsertAt<V>(map: Map<string, V>, index: number, key: string, value: V): void {
  const entries = [...map];
  entries.splice(index, 0, [key, value]);
  map.clear();
  for (const [k, v] of entries) map.set(k, v);
}

/** Puts a visitor in the queue behind everyone who arrived at or before `at`, ahead of those who came later. */
function insertByArrival(queue: Map<string, number>, visitor: string, at: number): void {
  const entries = [...queue];
  const index = entries.findIndex(([, since]) => since > at);
  if (index < 0) {
    queue.set(visitor, at);
    return;
  }
  reinsertAt(queue, index, visitor, at);
}

/** Applies one change; returns what puts the state back exactly as it was. */
export function apply(st: ShopState, c: Change): Undo {
  switch (c.op) {
    case 'open': {
      const session: Session = {
        visitor: c.v,
        shop: st.shop,
        agent: c.agent,
        startedAt: c.at,
        lastVisitorAt: 0,
        lastAgentAt: 0,
        remindedAt: 0,
        orphanedAt: 0,
      };
      if (c.g) session.group = c.g;
      if (c.since !== undefined) session.arrivedAt = c.since;
      if (c.clock) session.answerClockAt = c.at;
      const prevAssigned = st.lastAssigned.get(c.agent);
      st.sessions.set(c.v, session);
      serving(st, c.agent).add(c.v);
      st.lastAssigned.set(c.agent, c.at);
      const undoTranscript = editTranscript(st, c.v, c.at, false, (t) => {
        t.servedAt ||= c.at;
        if (c.g !== undefined) t.group = c.g;
        if (t.agents[t.agents.length - 1] !== c.agent) t.agents.push(c.agent);
      });
      return () => {
        undoTranscript();
        st.sessions.delete(c.v);
        unserve(st, c.agent, c.v);
        restoreMap(st.lastAssigned, c.agent, prevAssigned);
      };
    }
    case 'said': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      const field = c.by === 'visitor' ? 'lastVisitorAt' : 'lastAgentAt';
      const prev = s[field];
      s[field] = c.at;
      // The agent answered while its clock ran: the clock stops and its missed chats in a row start again.
      const undoClock = c.by === 'agent' ? answered(st, s) : noop;
      const undoHistory = pushCapped(st.history, c.v, { at: c.at, xml: c.xml }, st.limits.historyPerSession);
      const role = c.by === 'visitor' ? 'visitor' : s.agent === BOT ? 'bot' : 'agent';
      const undoLine = editTranscript(st, c.v, s.startedAt, false, (t) => {
        if (role !== 'visitor' && !t.firstReplyAt) t.firstReplyAt = c.at;
        addLine(st, t, { at: c.at, role, who: role === 'visitor' ? c.v : s.agent, text: c.text ?? '', ...factsOf(c) });
      });
      return () => {
        undoLine();
        s[field] = prev;
        undoClock();
        undoHistory();
      };
    }
    case 'monitor': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      const prev = s.monitors;
      const next = (prev ?? []).filter((m) => m !== c.who);
      if (c.on) next.push(c.who);
      if (next.length > 0) s.monitors = next;
      else delete s.monitors;
      return () => {
        if (prev) s.monitors = prev;
        else delete s.monitors;
      };
    }
    case 'tag': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      const t = st.transcripts.get(c.v);
      const prev = t?.tags;
      const had = prev?.includes(c.label) ?? false;
      if (had === c.on) return noop;
      const next = c.on ? [...(prev ?? []), c.label] : prev!.filter((x) => x !== c.label);
      const undo = editTranscript(st, c.v, s.startedAt, false, (tt) => {
        if (next.length > 0) tt.tags = next;
        else delete tt.tags;
      });
      // editTranscript restores the scalar fields and lengths, not tags: put the old list back (absent stays absent).
      return () => {
        const tt = st.transcripts.get(c.v);
        if (tt) {
          if (prev) tt.tags = prev;
          else delete tt.tags;
        }
        undo();
      };
    }
    case 'note': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      return editTranscript(st, c.v, s.startedAt, false, (t) => addLine(st, t, { at: c.at, role: 'note', who: c.who, text: c.text }));
    }
    case 'context': {
      // Kept on the transcript (a session, a wait or a left message has one), so it is archived with it.
      const t = st.transcripts.get(c.v);
      if (!t) return noop;
      const prev = t.context;
      if (isEmptyContext(c.ctx)) delete t.context;
      else t.context = c.ctx;
      return () => {
        if (prev) t.context = prev;
        else delete t.context;
      };
    }
    case 'whisper': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      return editTranscript(st, c.v, s.startedAt, false, (t) => addLine(st, t, { at: c.at, role: 'whisper', who: c.who, text: c.text }));
    }
    case 'remind':
    case 'orphan': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      const field = c.op === 'remind' ? 'remindedAt' : 'orphanedAt';
      const prev = s[field];
      s[field] = c.at;
      return () => {
        s[field] = prev;
      };
    }
    case 'move': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      const prev = { agent: s.agent, remindedAt: s.remindedAt, orphanedAt: s.orphanedAt };
      const prevAssigned = st.lastAssigned.get(c.agent);
      const prevGroup = s.group;
      const { answerClockAt: prevClock, silentMoves: prevSilent } = s;
      const prevMissed = st.missed.get(s.agent);
      if (c.missed) {
        st.missed.set(s.agent, { inRow: (prevMissed?.inRow ?? 0) + 1, total: (prevMissed?.total ?? 0) + 1 });
        s.silentMoves = (s.silentMoves ?? 0) + 1;
      }
      if (c.clock) s.answerClockAt = c.at;
      else delete s.answerClockAt;
      const undoTranscript = editTranscript(st, c.v, s.startedAt, false, (t) => {
        t.agents.push(c.agent);
        t.transfers.push({ at: c.at, from: s.agent, to: c.agent, reason: c.reason ?? '' });
        if (c.g !== undefined) t.group = c.g;
        const why = c.reason ? ` (${c.reason})` : '';
        addLine(st, t, { at: c.at, role: 'system', who: st.shop, text: `transfer ${s.agent} -> ${c.agent}${why}` });
      });
      unserve(st, s.agent, c.v);
      Object.assign(s, { agent: c.agent, remindedAt: 0, orphanedAt: 0 });
      if (c.g !== undefined) s.group = c.g;
      serving(st, c.agent).add(c.v);
      st.lastAssigned.set(c.agent, c.at);
      return () => {
        undoTranscript();
        s.group = prevGroup;
        if (prevGroup === undefined) delete s.group;
        setOptional(s, 'answerClockAt', prevClock);
        setOptional(s, 'silentMoves', prevSilent);
        if (c.missed) restoreMap(st.missed, prev.agent, prevMissed);
        unserve(st, c.agent, c.v);
        Object.assign(s, prev);
        serving(st, prev.agent).add(c.v);
        restoreMap(st.lastAssigned, c.agent, prevAssigned);
      };
    }
    case 'close': {
      const s = st.sessions.get(c.v);
      if (!s) return noop;
      const history = st.history.get(c.v);
      const kept = st.kept.get(c.v);
      const prevSticky = st.sticky.peek(c.v);
      st.sessions.delete(c.v);
      unserve(st, s.agent, c.v);
      st.history.delete(c.v);
      st.kept.delete(c.v);
      // Re-set so it becomes the newest entry. Should that evict the oldest hint, an undo does not bring it back:
      // a lost hint only makes a returning visitor's agent a fresh choice.
      st.sticky.delete(c.v);
      st.sticky.set(c.v, { agent: s.agent, until: c.stickyUntil });
      // The transcript becomes an archive record, written to the archive store once this is durable.
      const t = st.transcripts.get(c.v) ?? { ...newTranscript(st.shop, c.v, s.startedAt, false), agents: [s.agent] };
      const endedAt = c.at ?? Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
      const record = archiveRecord(t, st.shop, c.v, s.agent, endedAt, c.reason ?? 'agent');
      const hadTranscript = st.transcripts.delete(c.v);
      st.unarchived.set(t.id, { kind: 'session', record });
      const prevDue = st.ratingDue.get(c.v);
      if (c.rateUntil) st.ratingDue.set(c.v, { id: t.id, until: c.rateUntil });
      return () => {
        restoreMap(st.ratingDue, c.v, prevDue);
        st.unarchived.delete(t.id);
        if (hadTranscript) st.transcripts.set(c.v, t);
        st.sessions.set(c.v, s);
        serving(st, s.agent).add(c.v);
        restoreMap(st.history, c.v, history);
        restoreMap(st.kept, c.v, kept);
        st.sticky.delete(c.v);
        if (prevSticky) st.sticky.set(c.v, prevSticky);
      };
    }
    case 'requeue': {
      const s = st.sessions.get(c.v);
      if (!s || st.queue.has(c.v)) return noop;
      st.sessions.delete(c.v);
      unserve(st, s.agent, c.v);
      if (c.since === undefined) st.queue.set(c.v, c.at);
      else insertByArrival(st.queue, c.v, c.since);
      setQueueGroup(st, c.v, s.group ?? '');
      const undoTranscript = editTranscript(st, c.v, s.startedAt, false, (t) => {
        t.queuedAt = c.at;
        t.servedAt = 0;
        if (c.note) addLine(st, t, { at: c.at, role: 'system', who: st.shop, text: c.note });
      });
      return () => {
        undoTranscript();
        leaveQueue(st, c.v);
        st.queue.delete(c.v);
        st.sessions.set(c.v, s);
        serving(st, s.agent).add(c.v);
      };
    }
    case 'enqueue': {
      if (st.queue.has(c.v)) return noop;
      st.queue.set(c.v, c.at);
      setQueueGroup(st, c.v, c.g ?? '');
      const undoTranscript = editTranscript(st, c.v, c.at, true, () => {});
      return () => {
        undoTranscript();
        leaveQueue(st, c.v);
        st.queue.delete(c.v);
      };
    }
    case 'dequeue': {
      const at = st.queue.get(c.v);
      if (at === undefined) return noop;
      const index = st.head() === c.v ? 0 : [...st.queue.keys()].indexOf(c.v);
      st.queue.delete(c.v);
      const key = leaveQueue(st, c.v);
      return () => {
        setQueueGroup(st, c.v, key);
        reinsertAt(st.queue, index, c.v, at);
      };
    }
    case 'keep': {
      const list = st.kept.get(c.v);
      if (list) list.push({ at: c.at, xml: c.xml });
      else st.kept.set(c.v, [{ at: c.at, xml: c.xml }]);
      const undoLine = editTranscript(st, c.v, c.at, !st.sessions.has(c.v), (t) =>
        addLine(st, t, { at: c.at, role: 'visitor', who: c.v, text: c.text ?? '', ...factsOf(c) }),
      );
      return () => {
        undoLine();
        if (list) list.pop();
        else st.kept.delete(c.v);
      };
    }
    case 'rate': {
      const due = st.ratingDue.get(c.v);
      if (!due) return noop;
      st.ratingDue.delete(c.v);
      const key = `${due.id}#rating`;
      const prev = st.unarchived.get(key);
      st.unarchived.set(key, { kind: 'rating', id: due.id, score: c.score, at: c.at });
      return () => {
        restoreMap(st.unarchived, key, prev);
        st.ratingDue.set(c.v, due);
      };
    }
    case 'leave':
      return leave(st, c);
    case 'revoke':
      return revoke(st, c);
    case 'pickup': {
      const l = st.left.get(c.v);
      if (!l) return noop;
      const index = [...st.left.keys()].indexOf(c.v);
      st.left.delete(c.v);
      return () => reinsertAt(st.left, index, c.v, l);
    }
    case 'discard': {
      const l = st.left.get(c.v);
      if (!l) return noop;
      const index = [...st.left.keys()].indexOf(c.v);
      const kept = st.kept.get(c.v);
      const transcript = st.transcripts.get(c.v);
      st.left.delete(c.v);
      st.kept.delete(c.v);
      st.transcripts.delete(c.v);
      return () => {
        restoreMap(st.transcripts, c.v, transcript);
        restoreMap(st.kept, c.v, kept);
        reinsertAt(st.left, index, c.v, l);
      };
    }
    case 'emit':
      return emit(st, c.e);
    case 'delivered': {
      const gone = c.seqs.flatMap((seq) => {
        const e = st.outbox.get(seq);
        return e ? [[seq, e] as const] : [];
      });
      for (const [seq] of gone) st.outbox.delete(seq);
      return gone.length ? () => restoreOutbox(st, gone) : noop;
    }
    case 'archived': {
      const gone = c.keys.map((k) => [k, st.unarchived.get(k)] as const);
      for (const k of c.keys) st.unarchived.delete(k);
      return () => {
        for (const [k, u] of gone) if (u) st.unarchived.set(k, u);
      };
    }
    case 'away': {
      const m = st.missed.get(c.agent);
      if (!m) return noop;
      st.missed.set(c.agent, { ...m, inRow: 0 });
      return () => {
        st.missed.set(c.agent, m);
      };
    }
    case 'forget':
      return forget(st, c.v);
    case 'release': {
      const list = st.kept.get(c.v) ?? [];
      const taken = takeReleased(list, c);
      if (list.length === 0) st.kept.delete(c.v);
      // Without a session (re-queued meanwhile) they still reached the old agent: gone from kept, not in a history.
      const s = st.sessions.get(c.v);
      const prevVisitorAt = s?.lastVisitorAt;
      const undos = s ? c.relayed.map((m) => pushCapped(st.history, c.v, m, st.limits.historyPerSession)) : [];
      if (s && c.relayed.length) s.lastVisitorAt = c.relayed[c.relayed.length - 1].at;
      return () => {
        for (let i = undos.length - 1; i >= 0; i--) undos[i]();
        if (s) s.lastVisitorAt = prevVisitorAt!;
        for (let i = taken.length - 1; i >= 0; i--) list.splice(taken[i][0], 0, taken[i][1]);
        if (list.length) st.kept.set(c.v, list);
      };
    }
  }
}

/**
 * Takes the released messages out of a visitor's kept list: by identity, each where it is now (one revoked while on
 * its way is gone already, and nothing else goes in its stead); an old record without ids, the first n. Returns where
 * each was, in the order taken, for the undo.
 */
function takeReleased(list: Stored[], c: Extract<Change, { op: 'release' }>): [number, Stored][] {
  const taken: [number, Stored][] = [];
  if (!c.ids) {
    for (const m of list.splice(0, c.n)) taken.push([0, m]); // as if taken one by one from the front
    return taken;
  }
  for (const id of c.ids) {
    const at = id.slice(0, id.indexOf(':'));
    const i = list.findIndex((m) => String(m.at) === at && keptId(m) === id);
    if (i >= 0) taken.push([i, list.splice(i, 1)[0]]);
  }
  return taken;
}

const noop: Undo = () => {};

/** The next event number; past limits.outboxMax the oldest undelivered events are dropped (the desk counts them). */
function emit(st: ShopState, e: ShopEvent): Undo {
  const seq = ++st.eventSeq;
  st.outbox.set(seq, e);
  const dropped: (readonly [number, ShopEvent])[] = [];
  for (const [old, event] of st.outbox) {
    if (st.outbox.size <= st.limits.outboxMax) break;
    st.outbox.delete(old);
    dropped.push([old, event]);
  }
  st.eventsDropped += dropped.length;
  return () => {
    st.outbox.delete(seq);
    st.eventSeq--;
    st.eventsDropped -= dropped.length;
    if (dropped.length) restoreOutbox(st, dropped);
  };
}

/** Puts events back in number order (the undo of a delivery or a drop; rare, so O(n) is fine). */
function restoreOutbox(st: ShopState, events: readonly (readonly [number, ShopEvent])[]): void {
  const all = [...st.outbox, ...events].sort((a, b) => a[0] - b[0]);
  st.outbox.clear();
  for (const [seq, e] of all) st.outbox.set(seq, e);
}

/** The body facts of a said or kept change, for its line (absent ones stay absent: snapshots compare equal). */
function factsOf(c: BodyFacts): BodyFacts {
  const f: BodyFacts = {};
  if (c.id !== undefined) f.id = c.id;
  if (c.msgType !== undefined) f.msgType = c.msgType;
  if (c.urls !== undefined) f.urls = c.urls;
  return f;
}

const bodyIdOf = (xml: string) => findChild(parseElement(xml), 'body')?.attrs.id;
/** Where the stored message with this body id is (rare: a revoke; the cheap test first). */
const indexOfBody = (list: Stored[] | undefined, id: string) =>
  list ? list.findIndex((m) => m.xml.includes(id) && bodyIdOf(m.xml) === id) : -1;

/** A revoke: the sender's newest line with that id is marked; kept and history entries change as the change says. */
function revoke(st: ShopState, c: Extract<Change, { op: 'revoke' }>): Undo {
  const undos: Undo[] = [];
  const lines = st.transcripts.get(c.v)?.lines ?? [];
  const agent = st.sessions.get(c.v)?.agent;
  const own = (l: Line) => (c.by === 'visitor' ? l.role === 'visitor' : l.role === 'agent' && l.who === agent);
  let line: Line | undefined;
  for (let i = lines.length - 1; i >= 0 && !line; i--) if (lines[i].id === c.id && own(lines[i]) && !lines[i].revoked) line = lines[i];
  if (line) {
    const marked = line;
    marked.revoked = true;
    undos.push(() => {
      delete marked.revoked;
    });
  }
  const kept = st.kept.get(c.v);
  if (c.keep) {
    const list = kept ?? [];
    list.push({ at: c.at, xml: c.xml! });
    st.kept.set(c.v, list);
    undos.push(() => {
      list.pop();
      if (!kept) st.kept.delete(c.v);
    });
  } else if (c.by === 'visitor' && !st.sessions.has(c.v)) {
    // The visitor waits: its message has reached nobody yet and never will.
    const i = indexOfBody(kept, c.id);
    if (i >= 0) {
      const [m] = kept!.splice(i, 1);
      if (kept!.length === 0) st.kept.delete(c.v);
      undos.push(() => {
        kept!.splice(i, 0, m);
        st.kept.set(c.v, kept!);
      });
    }
  }
  if (c.xml && !c.keep) {
    // Like QChat's msg_history: the revoke takes the message's place, so a replay to another agent shows it revoked.
    const history = st.history.get(c.v);
    const i = indexOfBody(history, c.id);
    if (i >= 0) {
      const prev = history![i];
      history![i] = { at: prev.at, xml: c.xml };
      undos.push(() => {
        history![i] = prev;
      });
    }
  }
  return () => {
    for (let i = undos.length - 1; i >= 0; i--) undos[i]();
  };
}

/** A visitor's messages become a left message; one that waited in the queue abandons its wait there (counted). */
function leave(st: ShopState, c: Extract<Change, { op: 'leave' }>): Undo {
  if (st.left.has(c.v) || st.sessions.has(c.v)) return noop;
  const since = st.queue.get(c.v);
  const entry: LeftMessage = { at: c.at, reason: c.reason, g: c.g ?? '' };
  let undoQueue: Undo = noop;
  if (since !== undefined) {
    const index = [...st.queue.keys()].indexOf(c.v);
    st.queue.delete(c.v);
    entry.g = leaveQueue(st, c.v);
    // Its wait this time: since it joined the queue (a requeued visitor's place is older than that).
    entry.waitedMs = Math.max(0, c.at - (st.transcripts.get(c.v)?.queuedAt ?? since));
    const key = abandonedKey(c.reason, entry.g);
    const prev = st.abandoned.get(key);
    st.abandoned.set(key, { count: (prev?.count ?? 0) + 1, waitMs: (prev?.waitMs ?? 0) + entry.waitedMs });
    undoQueue = () => {
      restoreMap(st.abandoned, key, prev);
      setQueueGroup(st, c.v, entry.g);
      reinsertAt(st.queue, index, c.v, since);
    };
  }
  st.left.set(c.v, entry);
  return () => {
    st.left.delete(c.v);
    undoQueue();
  };
}

/**
 * Erasure: the visitor's session, queue place, kept and relayed messages, transcript (its context, tags and notes with
 * it), sticky hint, rating offer, left message, not yet archived records and undelivered webhook events go. Rare (an admin action), so the undo simply restores every map it touched
 * as it was, order included (snapshots of the undone state compare equal).
 */
function forget(st: ShopState, v: string): Undo {
  const undos: Undo[] = [];
  const touch = <K, V>(map: Map<K, V>, drop: (k: K, value: V) => boolean) => {
    const before = [...map];
    const gone = before.filter(([k, value]) => drop(k, value));
    if (gone.length === 0) return;
    for (const [k] of gone) map.delete(k);
    undos.push(() => {
      map.clear();
      for (const [k, value] of before) map.set(k, value);
    });
  };
  const s = st.sessions.get(v);
  if (s) {
    const set = st.byAgent.get(s.agent)!;
    const members = [...set];
    const byAgent = [...st.byAgent];
    unserve(st, s.agent, v); // may delete the agent's emptied set
    undos.push(() => {
      set.clear();
      for (const m of members) set.add(m);
      st.byAgent.clear();
      for (const [a, x] of byAgent) st.byAgent.set(a, x);
    });
  }
  if (st.queue.has(v)) {
    const waiting = [...st.waiting];
    const groups = [...st.queueGroup];
    leaveQueue(st, v); // its group key's count goes down
    undos.push(() => {
      st.waiting.clear();
      for (const [k, n] of waiting) st.waiting.set(k, n);
      st.queueGroup.clear();
      for (const [k, g] of groups) st.queueGroup.set(k, g);
    });
  }
  // Records of its sessions closed here, and the ratings of those (or of its last session, not yet rated).
  const ids = new Set<string>();
  for (const u of st.unarchived.values()) if (u.kind === 'session' && u.record.visitor === v) ids.add(u.record.id);
  const due = st.ratingDue.get(v);
  if (due) ids.add(due.id);
  touch(st.unarchived, (_k, u) => (u.kind === 'session' ? u.record.visitor === v : ids.has(u.id)));
  const visitorKey = (k: string) => k === v;
  touch(st.sessions, visitorKey);
  touch(st.queue, visitorKey);
  touch(st.kept, visitorKey);
  touch(st.history, visitorKey);
  touch(st.transcripts, visitorKey);
  touch(st.ratingDue, visitorKey);
  touch(st.left, visitorKey);
  touch(st.outbox, (_seq, e) => e.visitor === v); // its webhook events not yet delivered (their numbers stay given out)
  if (st.sticky.has(v)) {
    const before = st.stickyOldestFirst();
    st.sticky.delete(v);
    undos.push(() => {
      st.sticky.clear();
      for (const [k, x] of before) st.sticky.set(k, x);
    });
  }
  return () => {
    for (let i = undos.length - 1; i >= 0; i--) undos[i]();
  };
}

/** An agent's message in a session whose answer clock runs: the clock stops, its misses in a row start again. */
function answered(st: ShopState, s: Session): Undo {
  const clock = s.answerClockAt;
  if (clock === undefined) return noop;
  delete s.answerClockAt;
  const m = st.missed.get(s.agent);
  if (m?.inRow) st.missed.set(s.agent, { ...m, inRow: 0 });
  const agent = s.agent;
  return () => {
    s.answerClockAt = clock;
    restoreMap(st.missed, agent, m);
  };
}

/** Sets an optional field of a session back as it was: absent stays absent (snapshots compare equal). */
function setOptional<K extends 'answerClockAt' | 'silentMoves'>(s: Session, key: K, value: Session[K]): void {
  if (value === undefined) delete s[key];
  else s[key] = value;
}

function addWaiting(st: ShopState, key: string, n: number): void {
  const count = (st.waiting.get(key) ?? 0) + n;
  if (count > 0) st.waiting.set(key, count);
  else st.waiting.delete(key);
}

function setQueueGroup(st: ShopState, v: string, key: string): void {
  if (key) st.queueGroup.set(v, key);
  addWaiting(st, key, 1);
}

/** The visitor leaves the queue: returns the group key it waited for. */
function leaveQueue(st: ShopState, v: string): string {
  const key = st.queueGroup.get(v) ?? '';
  st.queueGroup.delete(v);
  addWaiting(st, key, -1);
  return key;
}

/**
 * Changes a visitor's transcript (creating it if there is none yet) and returns the exact undo. The undo restores
 * the scalar fields and array lengths; lines dropped past the cap come back too.
 */
function editTranscript(st: ShopState, v: string, startedAt: number, queued: boolean, edit: (t: Transcript) => void): Undo {
  let t = st.transcripts.get(v);
  const created = !t;
  if (!t) st.transcripts.set(v, (t = newTranscript(st.shop, v, startedAt, queued)));
  const { servedAt, queuedAt, firstReplyAt, group, omitted } = t;
  const lengths = [t.agents.length, t.transfers.length, t.lines.length];
  const head = t.lines.slice(0, 1);
  edit(t);
  const tt = t;
  return () => {
    if (created) {
      st.transcripts.delete(v);
      return;
    }
    const shifted = tt.omitted !== omitted;
    Object.assign(tt, { servedAt, queuedAt, firstReplyAt, group, omitted });
    tt.agents.length = lengths[0];
    tt.transfers.length = lengths[1];
    if (shifted) tt.lines.unshift(...head);
    tt.lines.length = lengths[2];
  };
}

function addLine(st: ShopState, t: Transcript, line: Line): void {
  t.lines.push(line);
  if (t.lines.length > st.limits.transcriptPerSession) {
    t.lines.shift();
    t.omitted++;
  }
}

function pushCapped(map: Map<string, Stored[]>, key: string, item: Stored, cap: number): Undo {
  let list = map.get(key);
  const created = !list;
  if (!list) map.set(key, (list = []));
  list.push(item);
  const dropped = list.length > cap ? list.shift() : undefined;
  return () => {
    list!.pop();
    if (dropped) list!.unshift(dropped);
    if (created) map.delete(key);
  };
}
