// Where closed sessions are archived: searched by shop, visitor, agent and time, exported,
// rated, aggregated for satisfaction metrics, and purged after the retention period.
// MemoryArchive (memory: store, tests) behaves like SqlArchive (src/storage/sql-archive.ts).
import type { ArchiveRecord } from '../domain/archive.js';
import type { ArchiveStore } from '../desk/ports.js';
import { type Rating, type ArchiveQuery, matches, SEARCH_LIMIT, aggregate, byNewest } from '../domain/archive.js';

export class MemoryArchive implements ArchiveStore {
  private readonly records = new Map<string, ArchiveRecord>();

  async put(records: ArchiveRecord[]) {
    for (const r of records) {
      const old = this.records.get(r.id);
      const rating = { rating: old?.rating ?? r.rating, ratedAt: old?.ratedAt ?? r.ratedAt };
      this.records.set(r.id, structuredClone({ ...r, tags: r.tags ?? [], ...rating })); // records of older journals lack tags
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
      .sort(byNewest)
      .slice(0, q.limit ?? SEARCH_LIMIT)
      .map((r) => structuredClone(r));
  }
  async get(id: string) {
    const r = this.records.get(id);
    return r && structuredClone(r);
  }
  async forgetVisitor(visitor: string) {
    let n = 0;
    for (const [id, r] of this.records) if (r.visitor === visitor && this.records.delete(id)) n++;
    return n;
  }
  async purge(before: number) {
    let n = 0;
    for (const [id, r] of this.records) if (r.endedAt < before && this.records.delete(id)) n++;
    return n;
  }
  async stats(q: Pick<ArchiveQuery, 'shop' | 'from' | 'to' | 'tag'>) {
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
