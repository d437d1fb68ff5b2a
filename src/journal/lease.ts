// One sidecar writes a database's journal at a time. It holds a lease row that expires unless
// renewed; another sidecar on the same database waits (stands by) until the lease is free or
// expired, then loads the state and serves. Every journal write is fenced on the lease, so a
// sidecar that lost it (paused past expiry, cut off) can never write over its successor.
// Times come from the database's clock, so sidecars' clocks need not agree.
import type { Queryable } from '../sql-store.js';

export interface Lease {
  readonly holder: string;
  /** Waits until this sidecar holds the lease (polling while another does), then keeps renewing it. */
  acquire(opts?: { onWait?: (holder: string) => void; signal?: AbortSignal }): Promise<void>;
  /** Called once if the lease is found held by another sidecar or cannot be renewed before it expires. */
  onLost(cb: (why: string) => void): void;
  /** Gives the lease up at once (clean shutdown): a standby takes over without waiting for expiry. */
  release(): Promise<void>;
}

const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)`;

export class SqlLease implements Lease {
  private timer: NodeJS.Timeout | undefined;
  private lost?: (why: string) => void;
  private renewedAt = 0;

  constructor(
    private readonly db: Queryable,
    readonly holder: string,
    private readonly ttlMs = 5000,
  ) {}

  /** True when this sidecar holds the lease now (and extends it). */
  private async take(): Promise<{ held: boolean; by: string }> {
    const rows = await this.db.query(
      `INSERT INTO sidecar_lease (id, holder, expires_at) VALUES (1, $1, ${NOW_MS} + $2)
       ON CONFLICT (id) DO UPDATE SET holder = $1, expires_at = excluded.expires_at
       WHERE sidecar_lease.holder = $1 OR sidecar_lease.expires_at < ${NOW_MS}
       RETURNING holder`,
      [this.holder, this.ttlMs],
    );
    if (rows.length) return { held: true, by: this.holder };
    const [row] = await this.db.query(`SELECT holder FROM sidecar_lease WHERE id = 1`);
    return { held: false, by: row?.holder ?? '?' };
  }

  async acquire(opts: { onWait?: (holder: string) => void; signal?: AbortSignal } = {}): Promise<void> {
    for (let told = false; ; told = true) {
      const { held, by } = await this.take();
      if (held) break;
      if (!told) opts.onWait?.(by);
      if (opts.signal?.aborted) throw new Error('lease wait aborted');
      await new Promise((r) => setTimeout(r, this.ttlMs / 5));
    }
    this.renewedAt = Date.now();
    this.timer = setInterval(() => void this.renew(), this.ttlMs / 3);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    try {
      const { held, by } = await this.take();
      if (held) this.renewedAt = Date.now();
      else this.fail(`lease taken over by ${by}`);
    } catch (e) {
      // A database blip: keep trying while the lease lasts; past it, a standby may have taken over.
      if (Date.now() - this.renewedAt > this.ttlMs) this.fail(`lease not renewed for ${this.ttlMs} ms: ${(e as Error).message}`);
    }
  }

  private fail(why: string): void {
    clearInterval(this.timer);
    const cb = this.lost;
    this.lost = undefined;
    cb?.(why);
  }

  onLost(cb: (why: string) => void): void {
    this.lost = cb;
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    this.lost = undefined;
    await this.db.query(`UPDATE sidecar_lease SET expires_at = 0 WHERE id = 1 AND holder = $1`, [this.holder]).catch(() => undefined);
  }
}
