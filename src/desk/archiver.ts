// Moves closed sessions and ratings from a shop's state (where the journal made them durable)
// into the archive store, then records that with an `archived` change: nothing acknowledged is
// lost (a crash before that change re-writes them, idempotently) and no SQL runs on the hot path.
// Also enforces the retention period.
import type { Log } from '../domain/log.js';
import type { ShopState, Unarchived } from '../routing/state.js';
import type { ArchiveRecord } from '../domain/archive.js';
import type { ArchiveStore } from './ports.js';
import type { Rating } from '../domain/archive.js';

const PURGE_EVERY_MS = 3600_000;

export class Archiver {
  private readonly flushing = new Set<string>();
  private readonly again = new Set<string>();
  private purgedAt = 0;

  constructor(
    readonly store: ArchiveStore,
    private readonly log: Log,
    private readonly retentionMs: number,
  ) {}

  /**
   * Writes what the shop has unarchived. `durable` resolves once everything the shop decided so far is durable (or
   * taken back); `done` records the written keys as a change of the shop. One flush per shop at a time.
   */
  flush(shop: string, st: ShopState, durable: () => Promise<void>, done: (keys: string[]) => Promise<void>): void {
    if (this.flushing.has(shop)) {
      this.again.add(shop);
      return;
    }
    this.flushing.add(shop);
    void (async () => {
      try {
        do {
          this.again.delete(shop);
          const taken = [...st.unarchived];
          if (taken.length === 0) break;
          await durable();
          // A close taken back (its commit failed) is gone from the state: only what is still there was durable.
          const sure = taken.filter(([k, u]) => st.unarchived.get(k) === u);
          await this.write(sure.map(([, u]) => u));
          await done(sure.map(([k]) => k));
        } while (this.again.has(shop));
      } catch (e) {
        this.log.warn('archive write failed; the next tick retries', { shop, err: e });
      } finally {
        this.flushing.delete(shop);
      }
    })();
  }

  get busy(): boolean {
    return this.flushing.size > 0;
  }

  /** Resolves once no flush of the shop is under way (erasure: one that took a record before it went may still write it). */
  async idle(shop: string): Promise<void> {
    while (this.flushing.has(shop)) await new Promise((r) => setTimeout(r, 5));
  }

  private async write(list: Unarchived[]): Promise<void> {
    const records: ArchiveRecord[] = [];
    const ratings: Rating[] = [];
    for (const u of list) {
      if (u.kind === 'session') records.push(u.record);
      else ratings.push({ id: u.id, score: u.score, at: u.at });
    }
    if (records.length) await this.store.put(records);
    if (ratings.length) await this.store.rate(ratings);
  }

  /** At most hourly: sessions that ended before the retention period are deleted. */
  async purge(now: number): Promise<void> {
    if (now - this.purgedAt < PURGE_EVERY_MS) return;
    this.purgedAt = now;
    const n = await this.store.purge(now - this.retentionMs);
    if (n) this.log.info('archive: sessions past retention deleted', { deleted: n });
  }
}
