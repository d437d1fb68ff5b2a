// Drives the shim's Erlang gRPC client (erlang-shim/src/consult_grpc.erl and its connection modules) from a test: an `erl`
// process runs erlang-shim/test/consult_grpc_driver.erl, which reads one Erlang term per command
// on stdin and prints one "@@ <json>" result line per command on stdout.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const shimDir = fileURLToPath(new URL('../../erlang-shim', import.meta.url));

/** `erl` arguments that run `evalExpr` with the shim's beams and its test beams on the path (make all test-beams). */
export function shimErlArgs(evalExpr: string, extra: string[] = []): string[] {
  const args = ['-noshell', '-pa', path.join(shimDir, 'ebin'), '-pa', path.join(shimDir, 'ebin-test'), '-eval', evalExpr];
  return extra.length > 0 ? [...args, '-extra', ...extra] : args;
}

/**
 * Resolves to the first truthy value of `cond()` (sync or async), polled every `everyMs`; rejects after `timeoutMs`
 * with what was awaited, the last value or error seen, and `detail()`.
 */
export async function waitFor<T>(
  what: string,
  cond: () => T | Promise<T>,
  opts: { timeoutMs?: number; everyMs?: number; detail?: () => string } = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 20_000, everyMs = 20 } = opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let last: string;
    try {
      const v = await cond();
      if (v) return v as NonNullable<T>;
      last = `last value: ${JSON.stringify(v)}`;
    } catch (e) {
      last = `last error: ${(e as Error).message}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${last})${opts.detail ? `\n${opts.detail()}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** A status field's value to wait for: itself, or at least a number. */
export type StatusValue = boolean | number | string | { atLeast: number };

export class ErlDriver {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private exit: string | undefined;
  stderr = '';

  constructor() {
    this.proc = spawn('erl', shimErlArgs('consult_grpc_driver:main()'));
    this.proc.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.proc.on('exit', (code, signal) => {
      this.exit = `erl exited (${signal ?? code})`;
      this.waiter?.();
    });
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      if (!line.startsWith('@@ ')) return;
      this.lines.push(line.slice(3));
      this.waiter?.();
    });
  }

  /** Sends one Erlang term (without the final dot); resolves to its parsed result. */
  // biome-ignore lint/suspicious/noExplicitAny: the driver answers any JSON shape; each test reads what it asked for
  async run(term: string, timeoutMs = 30_000): Promise<any> {
    this.proc.stdin.write(`${term}.\n`);
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.exit) throw new Error(`driver: ${this.exit} before answering ${term}\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`driver: no answer to ${term}\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 100);
      });
    }
    const result = JSON.parse(this.lines.shift()!);
    if (Array.isArray(result) && result[0] === 'driver_error') throw new Error(`driver error for ${term}: ${JSON.stringify(result)}`);
    return result;
  }

  /**
   * Waits (in the Erlang node, polling consult_grpc:status/0,1) until the status field `key` of connection `name`
   * (default: the only one) holds `value`; fails with the last status seen.
   */
  async waitStatus(key: string, value: StatusValue, opts: { name?: string; timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const v = typeof value === 'object' ? `{at_least, ${value.atLeast}}` : String(value);
    const term = opts.name ? `{wait_status, ${opts.name}, ${key}, ${v}, ${timeoutMs}}` : `{wait_status, ${key}, ${v}, ${timeoutMs}}`;
    const r = await this.run(term, timeoutMs + 10_000);
    if (r !== true)
      throw new Error(
        `timed out waiting for ${opts.name ?? 'the connection'}'s ${key} to be ${JSON.stringify(value)}: ${JSON.stringify(r)}`,
      );
  }

  /** Runs a driver command that polls until a condition holds (answers true, or [timed_out, ms, seen]); fails with what it saw. */
  async waitTrue(what: string, term: string, timeoutMs = 30_000): Promise<void> {
    const r = await this.run(term, timeoutMs);
    if (r !== true) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(r)}`);
  }

  /** Waits until the client's log (stderr) from offset `from` matches `re`; resolves to the match. */
  async waitLog(what: string, re: RegExp, from = 0, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    return waitFor(what, () => this.stderr.slice(from).match(re), {
      timeoutMs,
      detail: () => `client log since the mark:\n${this.stderr.slice(from).slice(-4000)}`,
    });
  }

  stop(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}
