// Waiting for a condition instead of for a while: a poll with a generous deadline and a failure that says
// what was awaited and what was seen last.

export interface WaitOptions {
  /** Give up after this long (default 20 s: generous, the condition is expected much sooner). */
  timeoutMs?: number;
  /** Between two polls (default 50 ms). */
  everyMs?: number;
  /** Appended to the failure message, e.g. a log tail (called only on failure). */
  detail?: () => string;
}

export type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

/**
 * Resolves to the first truthy value of `cond()` (sync or async); rejects with `timed out waiting for <what>`,
 * the last value or error of `cond`, and `detail()` when none came within timeoutMs.
 */
export async function waitUntil<T>(what: string, cond: () => T | Promise<T>, opts: WaitOptions = {}): Promise<Truthy<T>> {
  const { timeoutMs = 20_000, everyMs = 50 } = opts;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as Truthy<T>;
      last = `last value: ${JSON.stringify(v)}`;
    } catch (e) {
      last = `last error: ${(e as Error).message}`;
    }
    if (Date.now() > deadline) {
      const extra = opts.detail ? `\n${opts.detail()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${last})${extra}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** p, or an error after ms (the timer does not outlive p: the test process must end at once). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
