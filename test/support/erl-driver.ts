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

export class ErlDriver {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  stderr = '';

  constructor() {
    this.proc = spawn('erl', shimErlArgs('consult_grpc_driver:main()'));
    this.proc.stderr.on('data', (d) => {
      this.stderr += d;
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

  stop(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}
