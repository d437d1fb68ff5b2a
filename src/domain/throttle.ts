// Bounds on what strangers can make the sidecar do: log lines about refusals (one per key per interval, with a
// count) and repeated authentication failures (a key that failed too often is refused until its window ends).

/** A key with an open interval: events counted since its last line. */
interface Open {
  count: number;
  timer: ReturnType<typeof setTimeout>;
}

/** Beyond this many keys in one interval, the rest are counted together under OTHERS. */
const MAX_KEYS = 10_000;
export const OTHERS = '(other addresses)';

/**
 * One line per key per interval: the first event of a key is told at once (count 1); the ones after it are counted
 * and told as one line with their count when the interval ends, which opens the next one. A key quiet for a whole
 * interval starts over.
 */
export class ThrottledLog {
  private readonly open = new Map<string, Open>();

  constructor(
    private readonly emit: (key: string, count: number, intervalMs: number) => void,
    readonly intervalMs = 60_000,
  ) {}

  note(key: string): void {
    const k = this.open.has(key) || this.open.size < MAX_KEYS ? key : OTHERS;
    const e = this.open.get(k);
    if (e) {
      e.count++;
      return;
    }
    this.emit(k, 1, this.intervalMs);
    this.start(k);
  }

  private start(key: string): void {
    const entry: Open = {
      count: 0,
      timer: setTimeout(() => {
        this.open.delete(key);
        if (entry.count === 0) return;
        this.emit(key, entry.count, this.intervalMs);
        this.start(key);
      }, this.intervalMs),
    };
    entry.timer.unref?.();
    this.open.set(key, entry);
  }

  /** Tells what is counted now and stops the timers (shutdown, tests). */
  flush(): void {
    for (const [key, e] of this.open) {
      clearTimeout(e.timer);
      if (e.count) this.emit(key, e.count, this.intervalMs);
    }
    this.open.clear();
  }
}

/**
 * Failures per key in a fixed window that starts at the key's first failure: after `max` of them the key is
 * refused until the window ends. A success ends the key's window.
 */
export class FailureWindow {
  private readonly keys = new Map<string, { count: number; since: number }>();

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until the key may try again; 0 when it may now. */
  blockedFor(key: string): number {
    const e = this.keys.get(key);
    if (!e) return 0;
    const left = e.since + this.windowMs - this.now();
    if (left <= 0) {
      this.keys.delete(key);
      return 0;
    }
    return e.count >= this.max ? left : 0;
  }

  failed(key: string): void {
    const now = this.now();
    let e = this.keys.get(key);
    if (!e || now - e.since >= this.windowMs) {
      if (!e && this.keys.size >= MAX_KEYS) this.prune(now);
      e = { count: 0, since: now };
      this.keys.set(key, e);
    }
    e.count++;
  }

  succeeded(key: string): void {
    this.keys.delete(key);
  }

  private prune(now: number): void {
    for (const [k, e] of this.keys) if (now - e.since >= this.windowMs) this.keys.delete(k);
    // Still full: the oldest windows go first (a flood of addresses must not grow the map without bound).
    for (const k of this.keys.keys()) {
      if (this.keys.size < MAX_KEYS) break;
      this.keys.delete(k);
    }
  }
}
