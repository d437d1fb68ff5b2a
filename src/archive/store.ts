// Where closed sessions are archived: searched by shop, visitor, agent and time, exported,
// rated, aggregated for satisfaction metrics, and purged after the retention period.
// MemoryArchive (memory: store, tests) behaves like SqlArchive (src/archive/sql-archive.ts).
import type { ArchiveRecord } from './record.js';

export interface ArchiveQuery {
  shop?: string;
  visitor?: string;
  agent?: string; // any agent who served the session
  from?: number; // sessions that ended at or after (ms)
  to?: number; // and started at or before (ms)
  limit?: number;
}

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

export interface ArchiveStore {
  /** Idempotent: a record written again (a flush repeated after a restart) replaces itself, its rating kept. */
  put(records: ArchiveRecord[]): Promise<void>;
  rate(ratings: Rating[]): Promise<void>;
  search(q: ArchiveQuery): Promise<ArchiveRecord[]>;
  get(id: string): Promise<ArchiveRecord | undefined>;
  /** Deletes sessions that ended before `before`; returns how many. */
  purge(before: number): Promise<number>;
  stats(q: Pick<ArchiveQuery, 'shop' | 'from' | 'to'>): Promise<ArchiveStats[]>;
}

export const SEARCH_LIMIT = 1000;

export function matches(r: ArchiveRecord, q: ArchiveQuery): boolean {
  return (
    (!q.shop || r.shop === q.shop) &&
    (!q.visitor || r.visitor === q.visitor) &&
    (!q.agent || r.agents.includes(q.agent)) &&
    (q.from === undefined || r.endedAt >= q.from) &&
    (q.to === undefined || r.startedAt <= q.to)
  );
}

export class MemoryArchive implements ArchiveStore {
  private readonly records = new Map<string, ArchiveRecord>();

  async put(records: ArchiveRecord[]) {
    for (const r of records) {
      const old = this.records.get(r.id);
      this.records.set(r.id, structuredClone({ ...r, rating: old?.rating ?? r.rating, ratedAt: old?.ratedAt ?? r.ratedAt }));
    }
  }
  async rate(ratings: Rating[]) {
    for (const x of ratings) {
      const r = this.records.get(x.id);
      if (r) Object.assign(r, { rating: x.score, ratedAt: x.at });
    }
  }
  async search(q: ArchiveQuery) {
    return [...this.records.values()]
      .filter((r) => matches(r, q))
      .sort((a, b) => b.endedAt - a.endedAt)
      .slice(0, q.limit ?? SEARCH_LIMIT)
      .map((r) => structuredClone(r));
  }
  async get(id: string) {
    const r = this.records.get(id);
    return r && structuredClone(r);
  }
  async purge(before: number) {
    let n = 0;
    for (const [id, r] of this.records) if (r.endedAt < before && this.records.delete(id)) n++;
    return n;
  }
  async stats(q: Pick<ArchiveQuery, 'shop' | 'from' | 'to'>) {
    const groups = new Map<string, ArchiveRecord[]>();
    for (const r of this.records.values()) {
      if (!matches(r, q)) continue;
      for (const key of [`${r.shop}\n`, `${r.shop}\n${r.agent}`]) groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    return [...groups].map(([key, list]) => {
      const [shop, agent] = key.split('\n');
      return aggregate(shop, agent || null, list);
    });
  }
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
