// E2E harness: a private, throwaway ejabberd node on loopback per call.
// Independent of any system ejabberd: own node name, own dist/c2s/http ports,
// own temp dir (config, mnesia spool, logs).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EjabberdNode, freePort, type CtlResult } from '../../scripts/ejabberd-node.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface StartEjabberdOptions {
  domain?: string;
  /** Load mod_consult (default true). */
  withShim?: boolean;
  /** Rendered under `modules: mod_consult:`; e.g. sidecar_host, sidecar_port, timeout, failure_policy. */
  shimOptions?: Record<string, string | number>;
  /** Where mod_consult.beam lives (default <repo>/erlang-shim/ebin); copied into the node dir. */
  ebinDir?: string;
  loglevel?: 'critical' | 'error' | 'warning' | 'info' | 'debug';
  startTimeoutMs?: number;
}

export interface Ejabberd {
  domain: string;
  c2sPort: number;
  /** Loopback mod_http_api port (POST http://127.0.0.1:<port>/api/<command>). */
  httpPort: number;
  nodeName: string;
  dir: string;
  logFile: string;
  ctl(...args: string[]): Promise<CtlResult>;
  /** POST /api/<command> with a JSON body; resolves to the parsed JSON reply. */
  api(command: string, args: Record<string, unknown>): Promise<unknown>;
  register(user: string, password: string): Promise<void>;
  logTail(n?: number): string;
  stop(): Promise<void>;
}

export async function startEjabberd(opts: StartEjabberdOptions = {}): Promise<Ejabberd> {
  const domain = opts.domain ?? 'localhost';
  const withShim = opts.withShim ?? true;
  const [c2sPort, httpPort, distPort] = [await freePort(), await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ejabberd-test-'));
  const node = new EjabberdNode({
    dir,
    domain,
    c2sPort,
    httpPort,
    distPort,
    nodeName: `consult_test_${crypto.randomBytes(4).toString('hex')}@localhost`,
    loglevel: opts.loglevel ?? 'info',
    shimOptions: withShim ? (opts.shimOptions ?? {}) : undefined,
    removeDirOnExit: process.env.KEEP_EJABBERD !== '1',
    ebinSources: withShim ? [opts.ebinDir ?? path.join(repoRoot, 'erlang-shim', 'ebin')] : [],
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await node.stop();
    } finally {
      if (process.env.KEEP_EJABBERD === '1') console.error(`[ejabberd harness] kept ${dir}`);
      else node.removeDir();
    }
  };

  try {
    node.prepare();
    await node.start(opts.startTimeoutMs ?? 60_000);
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }

  return {
    domain,
    c2sPort,
    httpPort,
    nodeName: node.nodeName,
    dir,
    logFile: node.logFile,
    ctl: (...args) => node.ctl(args),
    api: (command, args) => node.api(command, args),
    register: (user, password) => node.register(user, password),
    logTail: (n = 40) => node.logTail(n),
    stop,
  };
}
