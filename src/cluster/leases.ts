// Who decides which shop. Every shop has one owner at a time: the sidecar holding the shop's
// lease row, which expires unless renewed. Sidecars on one database spread the shops between
// them by rendezvous hashing over the sidecars alive now (each one's heartbeat row): the
// owner of a shop whose preferred sidecar is another live one hands it over (after its last
// write is durable); a shop whose lease is free or expired is taken by its preferred sidecar,
// or by anyone once it has been left unowned for a whole lease period. So a standby takes a
// dead owner's shops within about one lease period, and a sidecar that joins gets its share.
// Rounds run every second; a release or a join is also announced (NOTIFY), so that the
// sidecars concerned run a round at once rather than up to a second later.
//
// Every journal write is fenced on its shops' lease rows (src/journal/sql-journal.ts), so a
// sidecar that lost a lease (paused past expiry, cut off) can never write over the new owner.
// Times come from the database's clock, so sidecars' clocks need not agree.
import { createHash } from 'node:crypto';
import type { Queryable } from '../storage/sql-store.js';

export interface Round {
  /** Shops this sidecar holds after the round (renewed or just taken). */
  held: Set<string>;
  /** Held shops another live sidecar should own: finish them, then release() them. */
  handOver: string[];
  /** The sidecars alive now (stable ids), this one included. */
  live: string[];
  /** Shops that belong here but another holder's lease has not run out or been released yet. */
  waiting: string[];
}

export interface ShopLeases {
  /** This process: what fences the journal (a restarted sidecar is a new holder). */
  readonly holder: string;
  /** The stable id shops are spread by (the same across restarts: config sidecarId). */
  readonly sidecar: string;
  readonly ttlMs: number;
  /** One round: heartbeat, renew what is held, take what this sidecar should own, say what to hand over. */
  round(shops: readonly string[]): Promise<Round>;
  /** Gives shops up at once (their last write is durable): their preferred sidecar takes them without waiting. */
  release(shops: readonly string[]): Promise<void>;
  /** Clean shutdown: every lease and the heartbeat go. */
  releaseAll(): Promise<void>;
  /**
   * Calls `changed` when another sidecar released leases or joined, so that a round can follow at once instead of
   * within a second (the rounds go on regardless).
   */
  watch?(changed: () => void): Promise<void>;
}

/** The sidecar a shop should be decided by, among those alive: the highest hash of (shop, sidecar). */
export function preferredOwner(shop: string, live: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = '';
  for (const id of live) {
    const score = createHash('sha1').update(`${shop}\n${id}`).digest('hex');
    if (best === undefined || score > bestScore) [best, bestScore] = [id, score];
  }
  return best;
}

export interface LeaseRow {
  shop: string;
  holder: string;
  sidecar: string;
  /** ms until it expires (negative: expired that long ago). */
  leftMs: number;
}

/**
 * What to take and what to hand over, from the leases as they are (pure). `me` is this sidecar's
 * stable id; `live` the ids alive now.
 */
export function plan(
  me: { holder: string; sidecar: string },
  shops: readonly string[],
  leases: readonly LeaseRow[],
  live: readonly string[],
  ttlMs: number,
): { take: string[]; handOver: string[]; mine: string[] } {
  const byShop = new Map(leases.map((l) => [l.shop, l]));
  const take: string[] = [];
  const handOver: string[] = [];
  const mine: string[] = [];
  for (const shop of shops) {
    const lease = byShop.get(shop);
    const preferred = preferredOwner(shop, live);
    if (preferred === me.sidecar) mine.push(shop);
    if (lease?.holder === me.holder) {
      if (preferred !== me.sidecar && preferred !== undefined) handOver.push(shop);
    } else if (!lease || lease.leftMs < 0) {
      // Free or expired: its preferred sidecar takes it; anyone does once it has been unowned a whole lease period.
      if (preferred === me.sidecar || (lease && lease.leftMs < -ttlMs)) take.push(shop);
    }
  }
  return { take, handOver, mine };
}

const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)`;

/** NOTIFY channel: leases were released, or a sidecar joined. */
const CHANNEL = 'consult_leases';

export class SqlShopLeases implements ShopLeases {
  private announced = false;

  constructor(
    private readonly db: Queryable & { listen?(channel: string, onNotify: () => void): Promise<void> },
    readonly holder: string,
    readonly sidecar: string,
    readonly ttlMs = 5000,
  ) {}

  async round(shops: readonly string[]): Promise<Round> {
    const ttl = this.ttlMs;
    await this.db.query(
      `INSERT INTO sidecars (holder, sidecar, expires_at) VALUES ($1, $2, ${NOW_MS} + $3)
       ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at`,
      [this.holder, this.sidecar, ttl],
    );
    const renewed = await this.db.query(`UPDATE shop_lease SET expires_at = ${NOW_MS} + $2 WHERE holder = $1 RETURNING shop`, [
      this.holder,
      ttl,
    ]);
    const live = (await this.db.query(`SELECT DISTINCT sidecar FROM sidecars WHERE expires_at > ${NOW_MS} ORDER BY sidecar`)).map(
      (r) => r.sidecar as string,
    );
    const leases = (await this.db.query(`SELECT shop, holder, sidecar, expires_at - ${NOW_MS} AS left_ms FROM shop_lease`)).map(
      (r): LeaseRow => ({ shop: r.shop, holder: r.holder, sidecar: r.sidecar, leftMs: Number(r.left_ms) }),
    );
    const { take, handOver, mine } = plan(this, shops, leases, live, ttl);
    const held = new Set(renewed.map((r) => r.shop as string));
    if (take.length > 0) {
      // Only if still free or expired when the row is locked: two sidecars taking the same shop cannot both win.
      const taken = await this.db.query(
        `INSERT INTO shop_lease (shop, holder, sidecar, expires_at)
         SELECT s, $2, $3, ${NOW_MS} + $4 FROM unnest($1::text[]) AS t(s)
         ON CONFLICT (shop) DO UPDATE SET holder = excluded.holder, sidecar = excluded.sidecar, expires_at = excluded.expires_at
         WHERE shop_lease.expires_at < ${NOW_MS}
         RETURNING shop`,
        [take, this.holder, this.sidecar, ttl],
      );
      for (const r of taken) held.add(r.shop);
    }
    // Old heartbeats are of no use to anyone.
    await this.db.query(`DELETE FROM sidecars WHERE expires_at < ${NOW_MS} - 3600000`);
    if (!this.announced) {
      // A sidecar that joins: the others hand its share over on their next round; tell them it is now.
      await this.notify();
      this.announced = true;
    }
    return { held, handOver: handOver.filter((s) => held.has(s)), live, waiting: mine.filter((s) => !held.has(s)) };
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

/** The embedded and memory stores have one sidecar by definition: it owns every shop. */
export class SoleOwner implements ShopLeases {
  readonly ttlMs = Infinity;
  constructor(
    readonly holder: string,
    readonly sidecar: string,
  ) {}
  async round(shops: readonly string[]): Promise<Round> {
    return { held: new Set(shops), handOver: [], live: [this.sidecar], waiting: [] };
  }
  async release(): Promise<void> {}
  async releaseAll(): Promise<void> {}
}
