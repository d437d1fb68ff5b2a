// What a closed session leaves behind: its whole transcript with who served it, transfers,
// close reason and timings, and later the visitor's rating. Built in memory when the close is
// applied (src/routing/state.ts), written to the archive store by the desk (src/desk/archiver.ts).
import { createHash } from 'node:crypto';
import { contextSearchText, type VisitorContext } from './context.js';

export interface Line {
  at: number;
  // whisper: a supervisor to the agent; note: an agent's /note; neither is ever seen by the visitor
  role: 'visitor' | 'agent' | 'bot' | 'system' | 'whisper' | 'note';
  who: string; // JID (the bot: "robot"; system lines: the shop)
  text: string;
  id?: string; // the message's body id (lines written before it lack it)
  msgType?: string; // QChat's msgType when not text ('1'): photo 3, file 5, product card 11… (src/xmpp/message-kind.ts)
  urls?: string[]; // the URLs of a photo, file, voice, video or card
  revoked?: true; // its sender took it back (a QChat revoke)
}

export interface Transfer {
  at: number;
  from: string;
  to: string;
  reason: string;
}

/** A session's transcript while it is open (or waiting): kept in the shop's state, journaled with it. */
export interface Transcript {
  id: string;
  startedAt: number; // first message (waiting or served)
  queuedAt: number; // when the visitor started waiting, else startedAt
  servedAt: number; // when an agent (or the bot) first took it; 0 = not yet
  firstReplyAt: number; // first agent or bot line; 0 = none
  group: string;
  agents: string[]; // every agent who served, in order
  transfers: Transfer[];
  lines: Line[];
  omitted: number; // oldest lines dropped past limits.transcriptPerSession
  tags?: string[]; // the agent's /tag labels, in the order given (absent: none)
  /** What the visitor's client said about the visitor (src/domain/context.ts); absent: nothing. */
  context?: VisitorContext;
}

/** A tag an agent gives a session (`/tag <label>`): one word of letters, digits, - or _, kept lower-cased. */
export const TAG_LABEL = /^[\p{L}\p{N}_-]{1,32}$/u;
export const TAG_LABEL_RULE = '1 to 32 letters, digits, - or _';
export const TAGS_MAX = 20; // per session

export type CloseReason = 'agent' | 'admin' | 'idle';

export interface ArchiveRecord {
  id: string;
  shop: string;
  visitor: string;
  agent: string; // the last one (who the session ended with)
  agents: string[];
  group: string;
  startedAt: number;
  endedAt: number;
  queueWaitMs: number;
  firstResponseMs: number | null;
  closeReason: CloseReason;
  transfers: Transfer[];
  lines: Line[];
  omitted: number;
  tags?: string[]; // the agent's /tag labels (the stores always give it; [] for records archived before tags)
  rating?: number;
  ratedAt?: number;
  /** The visitor's context as the session ended (absent: none was sent). */
  context?: VisitorContext;
}

/** Deterministic, so replaying the journal rebuilds the same id. */
export function transcriptId(shop: string, visitor: string, at: number): string {
  return `${at.toString(36)}-${createHash('sha1').update(`${shop}\n${visitor}\n${at}`).digest('hex').slice(0, 12)}`;
}

export function newTranscript(shop: string, visitor: string, at: number, queued: boolean): Transcript {
  return {
    id: transcriptId(shop, visitor, at),
    startedAt: at,
    queuedAt: at,
    servedAt: queued ? 0 : at,
    firstReplyAt: 0,
    group: '',
    agents: [],
    transfers: [],
    lines: [],
    omitted: 0,
  };
}

export function archiveRecord(
  t: Transcript,
  shop: string,
  visitor: string,
  agent: string,
  endedAt: number,
  reason: CloseReason,
): ArchiveRecord {
  return {
    id: t.id,
    shop,
    visitor,
    agent,
    agents: t.agents,
    group: t.group,
    startedAt: t.startedAt,
    endedAt,
    queueWaitMs: Math.max(0, (t.servedAt || endedAt) - t.queuedAt),
    firstResponseMs: t.firstReplyAt ? t.firstReplyAt - t.startedAt : null, // from the first message, queue included
    closeReason: reason,
    transfers: t.transfers,
    lines: t.lines,
    omitted: t.omitted,
    tags: t.tags ?? [],
    ...(t.context ? { context: t.context } : {}),
  };
}

export interface ArchiveQuery {
  shop?: string;
  visitor?: string;
  agent?: string; // any agent who served the session
  from?: number; // sessions that ended at or after (ms)
  to?: number; // and started at or before (ms)
  /** Sessions whose visitor context has this text in a name or value (case-insensitive). */
  context?: string;
  tag?: string; // sessions tagged with it
  /** Only sessions after this one in the search's order (newest first: by endedAt, then id): where a page starts. */
  after?: ArchivePosition;
  limit?: number;
}

/** A session's place in the archive's order: searches return the newest first, by endedAt then id (both descending). */
export interface ArchivePosition {
  endedAt: number;
  id: string;
}

/** The order of a search: newest first, ties broken by id, so that pages never skip or repeat a session. */
export const byNewest = (a: ArchivePosition, b: ArchivePosition): number =>
  b.endedAt - a.endedAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

export interface Rating {
  id: string;
  score: number;
  at: number;
}

/** Per shop (agent null) and per shop and last agent. Times in ms; csat: share of ratings of 4 or 5. */
export interface ArchiveStats {
  shop: string;
  agent: string | null;
  sessions: number;
  rated: number;
  csat: number | null;
  avgRating: number | null;
  avgFirstResponseMs: number | null;
  avgHandleMs: number;
  avgQueueWaitMs: number;
}

export const SEARCH_LIMIT = 1000;

export function matches(r: ArchiveRecord, q: ArchiveQuery): boolean {
  return (
    (!q.shop || r.shop === q.shop) &&
    (!q.visitor || r.visitor === q.visitor) &&
    (!q.agent || r.agents.includes(q.agent)) &&
    (q.from === undefined || r.endedAt >= q.from) &&
    (q.to === undefined || r.startedAt <= q.to) &&
    (!q.context || contextSearchText(r.context).includes(q.context.toLowerCase())) &&
    (!q.tag || (r.tags ?? []).includes(q.tag)) &&
    (q.after === undefined || byNewest(q.after, r) < 0)
  );
}

const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

export function aggregate(shop: string, agent: string | null, list: ArchiveRecord[]): ArchiveStats {
  const ratings = list.map((r) => r.rating).filter((x): x is number => x != null);
  return {
    shop,
    agent,
    sessions: list.length,
    rated: ratings.length,
    csat: ratings.length ? ratings.filter((x) => x >= 4).length / ratings.length : null,
    avgRating: avg(ratings),
    avgFirstResponseMs: avg(list.map((r) => r.firstResponseMs).filter((x): x is number => x != null)),
    avgHandleMs: avg(list.map((r) => r.endedAt - r.startedAt)) ?? 0,
    avgQueueWaitMs: avg(list.map((r) => r.queueWaitMs)) ?? 0,
  };
}
