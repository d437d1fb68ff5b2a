// The journal in PGlite or PostgreSQL: one row per shop per group commit, written by one
// statement; a snapshot (in parts) replaces a shop's rows before it. On PostgreSQL, where
// several sidecars share the database, a write is fenced on its shops' lease rows.
import type { Change } from '../routing/state.js';
import type { Driver, Queryable } from './driver.js';
import type { JournalStore, LoadedShop, ShopRecord, SnapshotWrite } from '../desk/journal.js';

/** A write refused because this sidecar no longer holds the lease of (some of) its shops. */
export class LeaseLost extends Error {
  constructor(readonly shops: string[]) {
    super(`journal write refused: this sidecar no longer holds the lease of ${shops.join(', ')}`);
  }
}

export class SqlJournal implements JournalStore {
  /** `holder`: fence every write on the shops' lease rows (shared databases); absent: this process is the only writer. */
  constructor(
    private readonly db: Driver,
    private readonly holder?: string,
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

  /**
   * One statement. The fence locks the shops' lease rows (FOR SHARE) until the write commits: a sidecar taking one
   * over waits for it, so the new owner's load sees this write or the write is refused, never both half-way.
   * One shop (the common case) needs no array: PGlite encodes those slowly.
   */
  private async insert(q: Queryable, shops: string[], bodies: string[]): Promise<void> {
    if (shops.length === 0) return;
    const one = shops.length === 1;
    // The only writer (no lease to fence on): nothing to read back.
    if (!this.holder) {
      if (one) await q.query(`INSERT INTO journal (shop, body) VALUES ($1, $2)`, [shops[0], bodies[0]]);
      else await q.query(`INSERT INTO journal (shop, body) SELECT s, b FROM unnest($1::text[], $2::text[]) AS t(s, b)`, [shops, bodies]);
      return;
    }
    const rows = one
      ? await q.query(
          `WITH held AS (SELECT 1 FROM shop_lease WHERE shop = $1 AND holder = $3 FOR SHARE)
             INSERT INTO journal (shop, body) SELECT $1::text, $2::text WHERE EXISTS (SELECT 1 FROM held) RETURNING seq`,
          [shops[0], bodies[0], this.holder],
        )
      : await q.query(
          `WITH held AS (SELECT shop FROM shop_lease WHERE shop = ANY($1::text[]) AND holder = $3 FOR SHARE)
             INSERT INTO journal (shop, body) SELECT s, b FROM unnest($1::text[], $2::text[]) AS t(s, b)
             WHERE (SELECT count(*) FROM held) = $4 RETURNING seq`,
          [shops, bodies, this.holder, shops.length],
        );
    if (rows.length !== shops.length) throw new LeaseLost(await this.notHeld(q, shops));
  }

  private async notHeld(q: Queryable, shops: string[]): Promise<string[]> {
    const held = new Set(
      (await q.query(`SELECT shop FROM shop_lease WHERE shop = ANY($1::text[]) AND holder = $2`, [shops, this.holder])).map((r) => r.shop),
    );
    return shops.filter((s) => !held.has(s));
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
