// The journal kept in this process: for tests and benchmarks (`memory:`). It behaves like the SQL
// stores, snapshots included, so a test can reload a shop from it as a restarted sidecar would.
import type { Change } from '../routing/state.js';
import type { JournalStore, LoadedShop, ShopRecord, SnapshotWrite } from '../desk/journal.js';

export class MemoryJournal implements JournalStore {
  private readonly shops = new Map<string, { snapshot?: string[]; batches: Change[][] }>();

  async append(records: ShopRecord[], snapshots: SnapshotWrite[]): Promise<void> {
    for (const r of records) this.of(r.shop).batches.push(r.changes); // change records are never mutated
    for (const s of snapshots) this.shops.set(s.shop, { snapshot: s.parts, batches: [] });
  }

  async load(shop: string): Promise<LoadedShop> {
    const kept = this.shops.get(shop);
    return { snapshot: kept?.snapshot, batches: [...(kept?.batches ?? [])] };
  }

  async forget(shop: string): Promise<void> {
    this.shops.delete(shop);
  }

  private of(shop: string) {
    let s = this.shops.get(shop);
    if (!s) this.shops.set(shop, (s = { batches: [] }));
    return s;
  }
}
