// The journal in PGlite or PostgreSQL: one row per shop per group commit, written by one
// statement, fenced on the lease; a snapshot (in parts) replaces a shop's rows before it.
import type { Change } from '../routing/state.js';
import type { Driver, Queryable } from '../sql-store.js';
import type { JournalStore, LoadedShop, ShopRecord, SnapshotWrite } from './journal.js';
import type { Lease } from './lease.js';

export class LeaseLost extends Error {}

export class SqlJournal implements JournalStore {
  constructor(
    private readonly db: Driver,
    private readonly lease: Lease,
  ) {}

  async append(records: ShopRecord[], snapshots: SnapshotWrite[]): Promise<void> {
    // Serialised before the first await: the caller's change objects stay as they are, but be strict anyway.
    const shops = records.map((r) => r.shop);
    const bodies = records.map((r) => JSON.stringify(r.changes));
    if (snapshots.length === 0) return this.insert(this.db, shops, bodies);
    await this.db.transaction(async (q) => {
      await this.insert(q, shops, bodies);
      for (const s of snapshots) {
        // The snapshot covers every row of its shop so far (this batch included): those rows go.
        const [{ upto }] = await q.query(`SELECT coalesce(max(seq), 0) AS upto FROM journal WHERE shop = $1`, [s.shop]);
        await q.query(`DELETE FROM snapshot_parts WHERE shop = $1`, [s.shop]);
        for (const [i, part] of s.parts.entries()) {
          await q.query(`INSERT INTO snapshot_parts (shop, part, upto, body) VALUES ($1, $2, $3, $4)`, [s.shop, i, upto, part]);
        }
        await q.query(`DELETE FROM journal WHERE shop = $1 AND seq <= $2`, [s.shop, upto]);
      }
    });
  }

  /** One statement, fenced on the lease. One shop (the common case) needs no array: PGlite encodes those slowly. */
  private async insert(q: Queryable, shops: string[], bodies: string[]): Promise<void> {
    if (shops.length === 0) return;
    const fence = `WHERE EXISTS (SELECT 1 FROM sidecar_lease WHERE id = 1 AND holder = $3) RETURNING seq`;
    const rows =
      shops.length === 1
        ? await q.query(`INSERT INTO journal (shop, body) SELECT $1::text, $2::text ${fence}`, [shops[0], bodies[0], this.lease.holder])
        : await q.query(`INSERT INTO journal (shop, body) SELECT s, b FROM unnest($1::text[], $2::text[]) AS t(s, b) ${fence}`, [
            shops,
            bodies,
            this.lease.holder,
          ]);
    if (rows.length !== shops.length) throw new LeaseLost(`journal write refused: ${this.lease.holder} no longer holds the lease`);
  }

  async load(shop: string): Promise<LoadedShop> {
    const parts = await this.db.query(`SELECT upto, body FROM snapshot_parts WHERE shop = $1 ORDER BY part`, [shop]);
    const rows = await this.db.query(`SELECT body FROM journal WHERE shop = $1 AND seq > $2 ORDER BY seq`, [shop, parts[0]?.upto ?? 0]);
    return {
      snapshot: parts.length ? parts.map((p) => p.body as string) : undefined,
      batches: rows.map((r) => JSON.parse(r.body) as Change[]),
    };
  }

  async forget(shop: string): Promise<void> {
    await this.db.transaction(async (q) => {
      await q.query(`DELETE FROM journal WHERE shop = $1`, [shop]);
      await q.query(`DELETE FROM snapshot_parts WHERE shop = $1`, [shop]);
    });
  }
}
