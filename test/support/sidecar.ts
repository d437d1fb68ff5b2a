// Runs the real sidecar (src/main.ts) as a child process, the way an admin runs it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface SidecarProcess {
  port: number;
  /** Resolves when a log line containing `text` appears (past lines count after `since`). */
  waitForLog(text: string, since?: number, timeoutMs?: number): Promise<void>;
  lines: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Sends a signal without waiting for an exit (SIGSTOP / SIGCONT). */
  signal(signal: NodeJS.Signals): void;
}

/** A config file; its metrics listener on a free port unless it says otherwise (tests run many sidecars at once). */
export function writeConfig(config: unknown): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'consult-config-')), 'consult.json');
  fs.writeFileSync(file, JSON.stringify({ metrics: { port: 0 }, ...(config as object) }, null, 2));
  return file;
}

export function startSidecar(configFile: string, port: number): SidecarProcess {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'src/main.ts'), '--config', configFile, '--grpc-port', String(port)],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  let listeners: (() => void)[] = [];
  const onData = (buf: Buffer) => {
    lines.push(...buf.toString().split('\n').filter(Boolean));
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A test process that dies (an uncaught error, uvu exiting early) must not leave its sidecars running.
  const orphaned = () => child.kill('SIGKILL');
  process.once('exit', orphaned);
  void exited.then(() => process.off('exit', orphaned));

  return {
    port,
    lines,
    waitForLog(text, since = 0, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (lines.slice(since).some((l) => l.includes(text))) {
            listeners = listeners.filter((l) => l !== check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners = listeners.filter((l) => l !== check);
          reject(new Error(`sidecar: no log line with "${text}" within ${timeoutMs} ms; log:\n${lines.join('\n')}`));
        }, timeoutMs);
        listeners.push(check);
        check();
      });
    },
    signal(signal) {
      child.kill(signal);
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
