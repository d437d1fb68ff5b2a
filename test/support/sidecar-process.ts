// The real sidecar (src/main.ts) as a child process whose every log line is kept, with its exit code: for tests
// that watch it fail, refuse a start or exit (startSidecar in sidecar.ts is for ones that only run it).
import { type ChildProcess, type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface SidecarChild {
  child: ChildProcess;
  pid: number;
  /** Its stdout and stderr lines so far. */
  lines: string[];
  /** Its exit code (null after a signal). */
  exited: Promise<number | null>;
  /** Resolves once a log line contains `text`; rejects, with the log, after timeoutMs or once it exited. */
  waitForLog(text: string, timeoutMs?: number): Promise<void>;
  /** Sends the signal (to its whole process group when run `under` a command) unless it ended; waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface SpawnOptions {
  /** waitForLog's default timeout (30 s unless told). */
  logTimeoutMs?: number;
  /** kill()'s default signal (SIGKILL unless told). */
  killSignal?: NodeJS.Signals;
  /** A command and its arguments the sidecar is run under (e.g. strace), in a process group of its own. */
  under?: string[];
}

export function spawnSidecar(config: string, port: number, opts: SpawnOptions = {}): SidecarChild {
  const { logTimeoutMs = 30_000, killSignal = 'SIGKILL', under } = opts;
  const main = [process.execPath, '--import', 'tsx', path.join(ROOT, 'src/main.ts'), '--config', config, '--grpc-port', String(port)];
  const [command, ...args] = under ? [...under, ...main] : main;
  const child: ChildProcess = spawn(command!, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: under !== undefined, // its own process group: the command and the sidecar are stopped together
  });
  const lines: string[] = [];
  const onData = (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean));
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    pid: child.pid!,
    lines,
    exited,
    async waitForLog(text, timeoutMs = logTimeoutMs) {
      const until = Date.now() + timeoutMs;
      while (!lines.some((l) => l.includes(text))) {
        if (Date.now() > until || child.exitCode !== null)
          throw new Error(`no log line with "${text}" (exit ${child.exitCode}); log:\n${lines.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal = killSignal) {
      if (child.exitCode === null && child.signalCode === null) {
        if (!under) child.kill(signal);
        else {
          try {
            process.kill(-child.pid!, signal);
          } catch {
            /* gone */
          }
        }
      }
      await exited;
    },
  };
}

export interface SidecarOutput {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** What it wrote so far: stdout, stderr, and both in the order they came. */
  stdout(): string;
  stderr(): string;
  all(): string;
  /** How it ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The real sidecar (src/main.ts) with its output kept as text, for tests that read its log by offset or as JSON lines. */
export function spawnSidecarOutput(config: string, port: number): SidecarOutput {
  return spawnSidecarArgs(['--config', config, '--grpc-port', String(port)]);
}

/** spawnSidecarOutput with the command line and environment a test chooses (CONSULT_* variables stay out unless given). */
export function spawnSidecarArgs(args: string[], env: Record<string, string> = {}): SidecarOutput {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONSULT_')));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...inherited, ...env },
  });
  let stdout = '';
  let stderr = '';
  let all = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    all += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
    all += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, all: () => all, exited };
}
