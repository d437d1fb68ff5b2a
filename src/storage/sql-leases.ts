// The SQL half of the shop leases (src/cluster/leases.ts plans the rounds): rows in shop_lease and sidecars,
// times from the database's clock, releases and joins announced with NOTIFY.
import { type ShopLeases, type Round, type LeaseRow, candidates, plan } from '../cluster/leases.js';
import type { Queryable } from './driver.js';

const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)`;

/** NOTIFY channel: leases were released, or a sidecar joined. */
const CHANNEL = 'consult_leases';

export class SqlShopLeases implements ShopLeases {
  private announced = false;
  private ready: boolean;

  /** `ready`: false for a sidecar the shims cannot reach yet (markReady() when they can). */
  constructor(
    private readonly db: Queryable & { listen?(channel: string, onNotify: () => void): Promise<void> },
    readonly holder: string,
    readonly sidecar: string,
    readonly ttlMs = 5000,
    { ready = true }: { ready?: boolean } = {},
  ) {
    this.ready = ready;
  }

  markReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.announced = false; // the others hand its share over on their next round: tell them it is now
  }

  async round(shops: readonly string[]): Promise<Round> {
    const ttl = this.ttlMs;
    await this.db.query(
      `INSERT INTO sidecars (holder, sidecar, expires_at, ready) VALUES ($1, $2, ${NOW_MS} + $3, $4)
       ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at, ready = excluded.ready`,
      [this.holder, this.sidecar, ttl, this.ready],
    );
    const renewed = await this.db.query(`UPDATE shop_lease SET expires_at = ${NOW_MS} + $2 WHERE holder = $1 RETURNING shop, epoch`, [
      this.holder,
      ttl,
    ]);
    // Other holders only: this process's own readiness is what it says, whatever its row held.
    const heartbeats = await this.db.query(`SELECT sidecar, ready FROM sidecars WHERE expires_at > ${NOW_MS} AND holder <> $1`, [
      this.holder,
    ]);
    const live = candidates(
      this.sidecar,
      heartbeats.map((r) => ({ sidecar: r.sidecar as string, ready: r.ready as boolean })),
      this.ready,
    );
    const leases = (await this.db.query(`SELECT shop, holder, sidecar, expires_at - ${NOW_MS} AS left_ms FROM shop_lease`)).map(
      (r): LeaseRow => ({ shop: r.shop, holder: r.holder, sidecar: r.sidecar, leftMs: Number(r.left_ms) }),
    );
    const { take, handOver, mine } = plan(this, shops, leases, live, ttl);
    const epochs = new Map(renewed.map((r) => [r.shop as string, Number(r.epoch)]));
    if (take.length > 0) {
      // Only if still free or expired when the row is locked: two sidecars taking the same shop cannot both win.
      // Every take is a new epoch, even by the holder's own sidecar id after a restart.
      const taken = await this.db.query(
        `INSERT INTO shop_lease (shop, holder, sidecar, expires_at, epoch)
         SELECT s, $2, $3, ${NOW_MS} + $4, 1 FROM unnest($1::text[]) AS t(s)
         ON CONFLICT (shop) DO UPDATE SET holder = excluded.holder, sidecar = excluded.sidecar, expires_at = excluded.expires_at,
           epoch = shop_lease.epoch + 1
         WHERE shop_lease.expires_at < ${NOW_MS}
         RETURNING shop, epoch`,
        [take, this.holder, this.sidecar, ttl],
      );
      for (const r of taken) epochs.set(r.shop, Number(r.epoch));
    }
    const held = new Set(epochs.keys());
    // Old heartbeats are of no use to anyone.
    await this.db.query(`DELETE FROM sidecars WHERE expires_at < ${NOW_MS} - 3600000`);
    if (!this.announced) {
      // A sidecar that joins: the others hand its share over on their next round; tell them it is now.
      await this.notify();
      this.announced = true;
    }
    return { held, epochs, handOver: handOver.filter((s) => held.has(s)), live, waiting: mine.filter((s) => !held.has(s)) };
  }

  async release(shops: readonly string[]): Promise<void> {
    if (shops.length === 0) return;
    // No holder any more: this sidecar's next round must not renew what it gave up (and its writes are fenced off).
    // Expired as of now, not long ago: its preferred sidecar takes it at once, the others only after a lease period.
    await this.db.query(`UPDATE shop_lease SET expires_at = ${NOW_MS}, holder = '' WHERE holder = $1 AND shop = ANY($2::text[])`, [
      this.holder,
      [...shops],
    ]);
    await this.notify();
  }

  async releaseAll(): Promise<void> {
    await this.db.query(`UPDATE shop_lease SET expires_at = ${NOW_MS}, holder = '' WHERE holder = $1`, [this.holder]);
    await this.db.query(`DELETE FROM sidecars WHERE holder = $1`, [this.holder]);
    await this.notify();
  }

  async watch(changed: () => void): Promise<void> {
    await this.db.listen?.(CHANNEL, changed);
  }

  private async notify(): Promise<void> {
    await this.db.query(`SELECT pg_notify($1, '')`, [CHANNEL]);
  }
}
