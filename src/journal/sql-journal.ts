// The journal in PGlite or PostgreSQL: one row per shop per group commit, written by one
// statement (unnest over two arrays), fenced on the lease; snapshots replace a shop's rows.
import type { Change } from '../routing/state.js';
import type { Driver, Queryable } from '../sql-store.js';
import type { JournalStore, LoadedShop, ShopRecord, SnapshotWrite } from './journal.js';
import type { Lease } from './lease.js';

export class LeaseLost extends Error {}

export class SqlJournal implements JournalStore {
  constructor(private readonly db: Driver, private readonly lease: Lease) {}

  async append(records: ShopRecord[], snapshots: SnapshotWrite[]): Promise<void> {
    // Serialised before the first await: the caller's change objects stay as they are, but be strict anyway.
    const shops = records.map((r) => r.shop);
    const bodies = records.map((r) => JSON.stringify(r.changes));
    if (snapshots.length === 0) return this.insert(this.db, shops, bodies);
    await this.db.transaction(async (q) => {
      await this.insert(q, shops, bodies);
      for (const s of snapshots) {
        await q.query(
          `INSERT INTO snapshots (shop, upto, body) VALUES ($1, (SELECT coalesce(max(seq), 0) FROM journal WHERE shop = $1), $2)
           ON CONFLICT (shop) DO UPDATE SET upto = excluded.upto, body = excluded.body`, [s.shop, s.json]);
        await q.query(`DELETE FROM journal WHERE shop = $1 AND seq <= (SELECT upto FROM snapshots WHERE shop = $1)`, [s.shop]);
      }
    });
  }

  private async insert(q: Queryable, shops: string[], bodies: string[]): Promise<void> {
    if (shops.length === 0) return;
    const rows = await q.query(
      `INSERT INTO journal (shop, body)
       SELECT s, b FROM unnest($1::text[], $2::text[]) AS t(s, b)
       WHERE EXISTS (SELECT 1 FROM sidecar_lease WHERE id = 1 AND holder = $3)
       RETURNING seq`, [shops, bodies, this.lease.holder]);
    if (rows.length !== shops.length) throw new LeaseLost(`journal write refused: ${this.lease.holder} no longer holds the lease`);
  }

  async load(shop: string): Promise<LoadedShop> {
    const [snap] = await this.db.query(`SELECT upto, body FROM snapshots WHERE shop = $1`, [shop]);
    const rows = await this.db.query(`SELECT body FROM journal WHERE shop = $1 AND seq > $2 ORDER BY seq`, [shop, snap?.upto ?? 0]);
    return { snapshot: snap ? JSON.parse(snap.body) : undefined, batches: rows.map((r) => JSON.parse(r.body) as Change[]) };
  }

  async forget(shop: string): Promise<void> {
    await this.db.transaction(async (q) => {
      await q.query(`DELETE FROM journal WHERE shop = $1`, [shop]);
      await q.query(`DELETE FROM snapshots WHERE shop = $1`, [shop]);
    });
  }
}
