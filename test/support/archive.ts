// Archived sessions made by hand, for tests of the archive's store, pages, CSV and metrics.
import type { ArchiveRecord } from '../../src/domain/archive.js';

/**
 * A session its one agent served and closed: no group, no transfers, no transcript, unanswered, unrated, one second
 * long ending at 1000 unless `o` says otherwise.
 */
export function closedSession(o: Pick<ArchiveRecord, 'id' | 'shop' | 'visitor' | 'agent'> & Partial<ArchiveRecord>): ArchiveRecord {
  const endedAt = o.endedAt ?? 1000;
  return {
    agents: [o.agent],
    group: '',
    startedAt: endedAt - 1000,
    endedAt,
    queueWaitMs: 0,
    firstResponseMs: null,
    closeReason: 'agent',
    transfers: [],
    lines: [],
    omitted: 0,
    ...o,
  };
}
