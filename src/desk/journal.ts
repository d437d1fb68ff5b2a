// Group commit. Decisions apply their changes to memory at once and queue them here;
// whatever queued while the previous write was in flight goes out in one write (one
// transaction), so latency is one write at low load and throughput grows with load,
// like PostgreSQL's own commit_delay-free group commit. A decision's promise resolves
// only once its changes are durable: its verdict waits for that.
//
// What is promised: a resolved commit survives SIGKILL. A commit that cannot be durable
// before its deadline, or whose write fails, is taken back in memory — together with every
// later change of the same shop, which may depend on it — and rejects; nothing of it is
// ever written. A write still in flight when its deadline passes is not taken back (the
// shim has bounced the stanza by then): the window is one write, not a backlog.
import type { Change, ShopState, Undo } from '../routing/state.js';

export interface ShopRecord {
  shop: string;
  changes: Change[];
}

export interface SnapshotWrite {
  shop: string;
  /** ShopState.snapshotParts(), taken when the batch was sealed (the live state moves on meanwhile). */
  parts: string[];
}

export interface LoadedShop {
  snapshot?: string[]; // its parts
  batches: Change[][];
}

/** Where the journal lives: memory (tests, benchmarks), PGlite or PostgreSQL. */
export interface JournalStore {
  /** One atomic write: the records, then each snapshot, which supersedes everything its shop wrote before. */
  append(records: ShopRecord[], snapshots: SnapshotWrite[]): Promise<void>;
  load(shop: string): Promise<LoadedShop>;
  /** A deleted shop: its journal and snapshot go. */
  forget(shop: string): Promise<void>;
}

/** A commit that was taken back: the deadline passed first, or the write failed. */
export class NotDurable extends Error {
  constructor(
    readonly reason: 'deadline' | 'write-failed',
    message: string,
  ) {
    super(message);
  }
}

interface Entry {
  shop: string;
  changes: Change[];
  undos: Undo[];
  deadline: number;
  /** Its shop is snapshotted in the same write (erasure: no earlier row of the shop survives it). */
  snapshot?: boolean;
  resolve(): void;
  reject(e: Error): void;
}

export interface JournalOptions {
  states: (shop: string) => ShopState | undefined;
  now?: () => number;
  /** Most entries in one write. */
  maxBatch?: number;
  /** A shop is snapshotted when its journal holds more than max(this, 2 × its state) changes. */
  snapshotMinChanges?: number;
  /**
   * Under steady load, a small batch waits this long for company before it is written (PostgreSQL's commit_delay):
   * fewer, larger writes, since a write costs about the same CPU for 1 change as for 16. 0: never waits.
   */
  commitDelayMs?: number;
  onBatch?: (info: { entries: number; changes: number; seconds: number; ok: boolean }) => void;
  onError?: (e: unknown) => void;
}

/** A batch smaller than this may wait for company (commitDelayMs); a bigger one already spreads its write's cost. */
export const SMALL_BATCH = 32;

/**
 * Whether a batch waits commitDelayMs before its write: only a small one, and only under steady load (the last
 * write ended less than commitDelayMs ago). A decision after a quiet spell is written at once.
 */
export function lingers(pending: number, sinceLastWriteMs: number, commitDelayMs: number): boolean {
  return commitDelayMs > 0 && pending < SMALL_BATCH && sinceLastWriteMs < commitDelayMs;
}

export class Journal {
  private pending: Entry[] = [];
  private writing: Entry[] | undefined;
  private readonly open = new Map<string, number>(); // shop → entries pending or in flight
  private readonly sinceSnapshot = new Map<string, number>(); // shop → changes written since its snapshot
  private writeMs = 5; // recent write time (EWMA): the margin a deadline needs
  private scheduled = false;
  private lastWriteEnd = -Infinity;
  private lingering: ReturnType<typeof setTimeout> | undefined; // a small batch waiting for company
  private readonly now: () => number;
  private readonly maxBatch: number;
  private readonly snapshotMin: number;

  constructor(
    private readonly store: JournalStore,
    private readonly opts: JournalOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.maxBatch = opts.maxBatch ?? 10_000;
    this.snapshotMin = opts.snapshotMinChanges ?? 100_000;
  }

  /** Entries waiting for durability (the backlog that overload control watches). */
  get backlog(): number {
    return this.pending.length + (this.writing?.length ?? 0);
  }

  /** True when a shop has changes not yet durable: a decision reading it must wait for them. */
  busy(shop: string): boolean {
    return (this.open.get(shop) ?? 0) > 0;
  }

  /** A freshly loaded shop: how many changes its journal holds beyond its snapshot. */
  loaded(shop: string, changes: number): void {
    this.sinceSnapshot.set(shop, changes);
  }

  /**
   * Resolves once the changes (already applied in memory) are durable; rejects with NotDurable after undoing them.
   * `snapshot`: the shop's snapshot is written in the same transaction, superseding every row it wrote before.
   */
  commit(shop: string, changes: Change[], undos: Undo[], deadline = Infinity, snapshot = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ shop, changes, undos, deadline, resolve, reject, ...(snapshot ? { snapshot } : {}) });
      this.open.set(shop, (this.open.get(shop) ?? 0) + 1);
      this.schedule();
    });
  }

  /** Resolves when everything queued so far is durable or taken back (shutdown). */
  async flushed(): Promise<void> {
    while (this.backlog > 0) await new Promise((r) => setTimeout(r, 5));
  }

  private schedule(): void {
    if (this.lingering && this.pending.length >= SMALL_BATCH) {
      // Company came: no need to wait any longer.
      clearTimeout(this.lingering);
      this.lingering = undefined;
      this.scheduled = false;
    }
    if (this.scheduled || this.writing || this.pending.length === 0) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      this.lingering = undefined;
      // flush() takes back and rejects what it cannot write; anything else escaping it is a bug, not a reason to die.
      this.flush().catch((e) => this.opts.onError?.(e));
    };
    const delay = this.opts.commitDelayMs ?? 0;
    if (lingers(this.pending.length, this.now() - this.lastWriteEnd, delay)) this.lingering = setTimeout(run, delay);
    // After the current I/O callbacks: everything that arrived in this read joins the batch.
    else setImmediate(run);
  }

  private async flush(): Promise<void> {
    if (this.writing || this.pending.length === 0) return;
    const batch = this.dropLate(this.withSnapshotted(this.pending.splice(0, this.maxBatch)));
    if (batch.length === 0) return this.schedule();
    this.writing = batch;
    const records = recordsOf(batch);
    let snapshots: SnapshotWrite[] = [];
    const started = this.now();
    let ok = true;
    try {
      snapshots = this.snapshotsDue(records, batch);
      await this.store.append(records, snapshots);
    } catch (e) {
      ok = false;
      this.opts.onError?.(e);
    }
    this.lastWriteEnd = this.now();
    const ms = this.lastWriteEnd - started;
    this.writeMs = this.writeMs * 0.8 + ms * 0.2;
    this.opts.onBatch?.({ entries: batch.length, changes: records.reduce((n, r) => n + r.changes.length, 0), seconds: ms / 1000, ok });
    this.writing = undefined;
    if (ok) {
      for (const r of records) this.sinceSnapshot.set(r.shop, (this.sinceSnapshot.get(r.shop) ?? 0) + r.changes.length);
      for (const s of snapshots) this.sinceSnapshot.set(s.shop, 0);
      for (const e of batch) this.settle(e);
    } else {
      // Later entries of the same shops were decided on top of these: take them all back, newest first.
      const shops = new Set(batch.map((e) => e.shop));
      const later = this.pending.filter((e) => shops.has(e.shop));
      this.pending = this.pending.filter((e) => !shops.has(e.shop));
      this.takeBack([...batch, ...later], new NotDurable('write-failed', 'the consult journal could not be written'));
    }
    this.schedule();
  }

  /**
   * An entry that asks for its shop's snapshot takes every pending entry of that shop into its batch (past
   * maxBatch if need be): the state in memory is then exactly what the batch makes durable.
   */
  private withSnapshotted(batch: Entry[]): Entry[] {
    const shops = new Set(batch.filter((e) => e.snapshot).map((e) => e.shop));
    if (shops.size === 0) return batch;
    const later = this.pending.filter((e) => shops.has(e.shop));
    if (later.length) this.pending = this.pending.filter((e) => !shops.has(e.shop));
    return [...batch, ...later];
  }

  /**
   * Entries whose deadline comes before the write could finish are taken back, with every
   * later entry of their shop (in this batch and still pending); the rest is written.
   */
  private dropLate(batch: Entry[]): Entry[] {
    const cutoff = this.now() + this.writeMs;
    const late = new Set<string>();
    for (const e of batch) if (e.deadline < cutoff) late.add(e.shop);
    if (late.size === 0) return batch;
    const keep: Entry[] = [];
    const back: Entry[] = [];
    const seen = new Set<string>();
    for (const e of batch) {
      if (late.has(e.shop) && (seen.has(e.shop) || e.deadline < cutoff)) {
        seen.add(e.shop);
        back.push(e);
      } else keep.push(e);
    }
    const later = this.pending.filter((e) => seen.has(e.shop));
    this.pending = this.pending.filter((e) => !seen.has(e.shop));
    this.takeBack([...back, ...later], new NotDurable('deadline', 'not durable before the deadline'));
    return keep;
  }

  private takeBack(entries: Entry[], err: NotDurable): void {
    for (let i = entries.length - 1; i >= 0; i--) {
      const undos = entries[i].undos;
      for (let j = undos.length - 1; j >= 0; j--) undos[j]();
    }
    for (const e of entries) this.settle(e, err);
  }

  private settle(e: Entry, err?: Error): void {
    const n = (this.open.get(e.shop) ?? 1) - 1;
    if (n > 0) this.open.set(e.shop, n);
    else this.open.delete(e.shop);
    if (err) e.reject(err);
    else e.resolve();
  }

  /**
   * Snapshots ride along with a batch when a shop's journal has grown past twice its state (Redis AOF's rewrite
   * rule): the cost stays proportional to what was written. Only when nothing of the shop is left pending, so the
   * state in memory is exactly what this batch makes durable.
   */
  private snapshotsDue(records: ShopRecord[], batch: Entry[]): SnapshotWrite[] {
    const out: SnapshotWrite[] = [];
    const asked = new Set(batch.filter((e) => e.snapshot).map((e) => e.shop));
    for (const r of records) {
      const st = this.opts.states(r.shop);
      if (st && asked.has(r.shop)) {
        // Asked for (erasure): a failure fails the whole write, which is then taken back.
        out.push({ shop: r.shop, parts: st.snapshotParts() });
        continue;
      }
      if (!st || (this.sinceSnapshot.get(r.shop) ?? 0) + r.changes.length <= Math.max(this.snapshotMin, 2 * st.size())) continue;
      // Scanning what is pending is only worth it for a shop that is due (rarely).
      if (!this.pending.some((e) => e.shop === r.shop)) {
        try {
          out.push({ shop: r.shop, parts: st.snapshotParts() });
        } catch (e) {
          this.opts.onError?.(e); // the journal goes on without this snapshot; the next batch tries again
        }
      }
    }
    return out;
  }
}

/** One record per shop, its changes in decision order; entries without changes only wait for their turn. */
function recordsOf(batch: Entry[]): ShopRecord[] {
  const byShop = new Map<string, Change[]>();
  for (const e of batch) {
    if (e.changes.length === 0) continue;
    const list = byShop.get(e.shop);
    if (list) list.push(...e.changes);
    else byShop.set(e.shop, [...e.changes]);
  }
  return [...byShop].map(([shop, changes]) => ({ shop, changes }));
}
