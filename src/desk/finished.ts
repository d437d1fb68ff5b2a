// What a live decision finished (sessions it closed, ratings it stored, chats agents missed), read from its own changes right after it
// ran and reported once they are durable. Journal replay applies changes without a decision, so it reports nothing:
// a restart never counts a close twice.
import type { ArchiveRecord } from '../domain/archive.js';
import type { Changes } from '../routing/changes.js';
import type { LeftReason, ShopState } from '../routing/state.js';
import type { DeskMetrics } from './ports.js';

export interface Finished {
  closed: ArchiveRecord[];
  ratings: number[];
  /** Chats that moved on because their agent did not answer in time. */
  missed: number;
  /** Waits that ended without an agent: out of the queue into a left message. */
  abandoned?: { group: string; reason: LeftReason; waitMs: number }[];
}

/**
 * Read before the commit: until it is durable no archive flush can take the records its closes made (the flush waits
 * for every earlier commit of the shop), so they are all still in the state's unarchived entries.
 */
export function finishedBy(w: Changes): Finished | undefined {
  let out: Finished | undefined;
  for (const c of w.list) {
    if (c.op === 'close') {
      const record = closedRecord(w.state, c.v, c.at);
      if (record) (out ??= empty()).closed.push(record);
    } else if (c.op === 'rate') (out ??= empty()).ratings.push(c.score);
    else if (c.op === 'move' && c.missed) (out ??= empty()).missed++;
    else if (c.op === 'leave') {
      const l = w.state.left.get(c.v);
      if (l?.waitedMs !== undefined) ((out ??= empty()).abandoned ??= []).push({ group: l.g, reason: l.reason, waitMs: l.waitedMs });
    }
  }
  return out;
}

export function report(metrics: DeskMetrics, shop: string, f: Finished): void {
  for (const r of f.closed) metrics.sessionClosed(r);
  for (const score of f.ratings) metrics.rated(shop, score);
  if (f.missed) metrics.missedChats(shop, f.missed);
  for (const a of f.abandoned ?? []) metrics.queueAbandoned?.(shop, a.group, a.reason, a.waitMs);
}

const empty = (): Finished => ({ closed: [], ratings: [], missed: 0 });

/** The record a close of this visitor just made: its newest unarchived session (at its end time when the close says). */
function closedRecord(st: ShopState, visitor: string, at: number | undefined): ArchiveRecord | undefined {
  let found: ArchiveRecord | undefined;
  for (const u of st.unarchived.values()) {
    if (u.kind !== 'session' || u.record.visitor !== visitor) continue;
    if (at !== undefined ? u.record.endedAt === at : !found || u.record.endedAt >= found.endedAt) found = u.record;
  }
  return found;
}
