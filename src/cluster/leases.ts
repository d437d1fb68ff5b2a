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
// Every journal write is fenced on its shops' lease rows (src/storage/sql-journal.ts), so a
// sidecar that lost a lease (paused past expiry, cut off) can never write over the new owner.
// Each lease also has an epoch that grows whenever it changes holder; the shims are told it
// with the shops a sidecar owns, so a stale sidecar that wakes up still listing a shop loses
// to the owner of the newer lease there too.
//
// A sidecar that has started but that the shims cannot reach yet (its port just opened, their
// reconnect backoff not run out) is alive but not ready: it is no candidate owner for the
// others, so a live standby keeps its shops until it is ready, and hands them back then.
// Times come from the database's clock, so sidecars' clocks need not agree.
import { createHash } from 'node:crypto';

export interface Round {
  /** Shops this sidecar holds after the round (renewed or just taken). */
  held: Set<string>;
  /** The lease epoch of each held shop (none for stores without leases). */
  epochs: Map<string, number>;
  /** Held shops another live sidecar should own: finish them, then release() them. */
  handOver: string[];
  /** The sidecars shops are spread over now (stable ids): those alive and ready, this one included once ready. */
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
  /** The shims can reach this sidecar: from the next round it is a candidate owner for the others. */
  markReady(): void;
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
 * The sidecars to spread shops over, from the heartbeats alive now: the ready ones, this one among
 * them once it is ready. One not ready yet counts itself only while no ready sidecar is there to
 * serve meanwhile (the first to start, or all of them starting together).
 */
export function candidates(me: string, heartbeats: readonly { sidecar: string; ready: boolean }[], meReady: boolean): string[] {
  const ready = new Set(heartbeats.filter((h) => h.ready).map((h) => h.sidecar));
  if (meReady || ready.size === 0) ready.add(me);
  return [...ready].sort();
}

/**
 * What to take and what to hand over, from the leases as they are (pure). `me` is this sidecar's
 * stable id; `live` the candidate owners now (candidates()).
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

/** The embedded and memory stores have one sidecar by definition: it owns every shop. */
export class SoleOwner implements ShopLeases {
  readonly ttlMs = Infinity;
  constructor(
    readonly holder: string,
    readonly sidecar: string,
  ) {}
  markReady(): void {}
  async round(shops: readonly string[]): Promise<Round> {
    return { held: new Set(shops), epochs: new Map(), handOver: [], live: [this.sidecar], waiting: [] };
  }
  async release(): Promise<void> {}
  async releaseAll(): Promise<void> {}
}
