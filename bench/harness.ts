// Shared by the sidecar benches: which store a run uses, a private PostgreSQL when asked
// for, and the real sidecar process (node dist/main.js --config …, built first).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort } from '../scripts/ejabberd-node.js';
import { startPostgres, type Postgres } from '../test/support/postgres.js';
import { writeConfig } from '../test/support/sidecar.js';
import { cpuSeconds, pidsWithArg } from './stats.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One store a bench runs on: the config's "store" value, a short label, and what to clean up. */
export interface BenchStore {
  label: string; // memory, pglite, postgres
  url: string;
  /** CPU seconds the store's own processes used so far (PostgreSQL's server); 0 for in-process stores. */
  serverCpu(): number;
  cleanup(): Promise<void>;
}

/**
 * Resolves a --store item. `memory:` as is; `pglite:` (no dir) = a fresh temp dir, removed afterwards;
 * `pglite:<dir>` / `pglite:memory` as given; `postgres` = a fresh database on a private PostgreSQL
 * (test/support/postgres.ts: initdb in a temp dir, loopback, fsync=off), started once per bench process;
 * `postgres://…` as given (the bench writes into it).
 */
export class StoreFactory {
  private pg?: Promise<Postgres>;
  private dbCount = 0;

  async open(spec: string): Promise<BenchStore> {
    const none = { serverCpu: () => 0, cleanup: async () => undefined };
    if (spec === 'memory:' || spec === 'memory') return { label: 'memory', url: 'memory:', ...none };
    if (spec === 'pglite:' || spec === 'pglite') {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-pglite-'));
      return {
        label: 'pglite',
        url: `pglite:${dir}`,
        serverCpu: () => 0,
        cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
      };
    }
    if (spec.startsWith('pglite:')) return { label: 'pglite', url: spec, ...none };
    if (spec === 'postgres' || spec === 'postgresql') {
      this.pg ??= startPostgres();
      const server = await this.pg;
      const db = `bench_${++this.dbCount}`;
      const admin = new pg.Client({ connectionString: server.url.replace(/\/test$/, '/postgres') });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${db}`);
      await admin.end();
      const port = new URL(server.url).port;
      return {
        label: 'postgres',
        url: server.url.replace(/\/test$/, `/${db}`),
        serverCpu: () => postgresCpu(port),
        cleanup: async () => undefined,
      };
    }
    if (/^postgres(ql)?:\/\//.test(spec))
      return { label: 'postgres', url: spec, serverCpu: () => postgresCpu(new URL(spec).port || '5432'), cleanup: async () => undefined };
    throw new Error(`--store: unknown store ${JSON.stringify(spec)} (memory:, pglite:, pglite:<dir>, postgres, postgres://…)`);
  }

  async close(): Promise<void> {
    const server = await this.pg?.catch(() => undefined); // a server that failed to start was reported where it failed
    await server?.stop();
  }
}

/** CPU of the PostgreSQL postmaster listening on `port` and of its live children (backends, walwriter…). */
function postgresCpu(port: string): number {
  const masters = pidsWithArg(port).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0]!.endsWith('postgres');
    } catch {
      return false;
    }
  });
  if (masters.length === 0) return 0;
  let total = 0;
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const f = fs.readFileSync(`/proc/${ent}/stat`, 'utf8').split(') ')[1]!.split(' ');
      const pid = Number(ent);
      if (masters.includes(pid) || masters.includes(Number(f[1]))) total += cpuSeconds(pid);
    } catch {
      /* gone */
    }
  }
  return total;
}

/**
 * Runs `bench` on every store spec, `repeat` times with the stores taking turns. A store that cannot start or whose
 * run fails (no PostgreSQL installed, a phase timeout) is reported in `failed`, and the others still run.
 */
export async function eachStore<R>(specs: string[], repeat: number, bench: (store: BenchStore, run: number) => Promise<R[]>) {
  const factory = new StoreFactory();
  const results: R[] = [];
  const failed: string[] = [];
  try {
    for (let run = 1; run <= repeat; run++) {
      for (const spec of specs) {
        try {
          const store = await factory.open(spec);
          console.error(`${store.label} (${store.url.replace(/\/\/[^@/]*@/, '//')}), run ${run}...`);
          try {
            results.push(...(await bench(store, run)));
          } finally {
            await store.cleanup();
          }
        } catch (e) {
          console.error(`${spec}, run ${run}: FAILED: ${(e as Error).message}`);
          failed.push(`${spec} (run ${run}): ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
  } finally {
    await factory.close();
  }
  return { results, failed };
}

export interface Sidecar {
  child: ChildProcess;
  port: number;
  configFile: string;
  cpu(): number;
  /** The sidecar's Prometheus /metrics (admin port), as `name{labels}` → value. */
  metrics(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

/** A sidecar's Prometheus /metrics on its admin port, as `name{labels}` → value. */
export async function scrapeMetrics(adminPort: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-zA-Z_:][^ ]*) ([^ ]+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Decisions between two scrapes: count, mean seconds, and the smallest histogram bucket holding 99 % of them. */
export function decisionDelta(a: Map<string, number>, b: Map<string, number>) {
  const d = (k: string) => (b.get(k) ?? 0) - (a.get(k) ?? 0);
  const count = d('consult_decision_seconds_count');
  const buckets = [...b.keys()]
    .filter((k) => k.startsWith('consult_decision_seconds_bucket{'))
    .map((k) => ({ le: Number(/le="([^"]+)"/.exec(k)![1]), n: d(k) }))
    .sort((x, y) => x.le - y.le);
  const p99 = buckets.find((x) => x.n >= 0.99 * count)?.le ?? Infinity;
  return { count, meanMs: count ? (1000 * d('consult_decision_seconds_sum')) / count : NaN, p99Ms: 1000 * p99 };
}

/** Group commits between two /metrics scrapes: batches, mean decisions per batch, mean write time. */
export function journalDelta(a: Map<string, number>, b: Map<string, number>) {
  const d = (k: string) => (b.get(k) ?? 0) - (a.get(k) ?? 0);
  const batches = d('consult_journal_batch_decisions_count');
  const writes = d('consult_journal_write_seconds_count{outcome="ok"}');
  return {
    batches,
    perBatch: batches ? d('consult_journal_batch_decisions_sum') / batches : NaN,
    writeMs: writes ? (1000 * d('consult_journal_write_seconds_sum{outcome="ok"}')) / writes : NaN,
    failed: d('consult_journal_write_seconds_count{outcome="failed"}'),
  };
}

/**
 * The sidecar as production runs it: `node dist/main.js`, compiled once per bench process (tsx's on-the-fly
 * transform adds a helper call to every named function, which the profiles showed on the hot path).
 */
let built = false;
function buildDist(): string {
  if (!built) {
    execFileSync(process.execPath, [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
      cwd: repoRoot,
      stdio: 'inherit',
    });
    built = true;
  }
  return path.join(repoRoot, 'dist/main.js');
}

/**
 * Starts the built sidecar (dist/main.js, see buildDist) on `config` (written to a temp file) and waits for "sidecar listening".
 * With profDir the sidecar runs under --cpu-prof; the profile is written when it exits (SIGTERM in stop()).
 */
export async function startSidecarProcess(config: object, port: number, profDir?: string, timeoutMs = 60_000): Promise<Sidecar> {
  // The admin API only for /metrics (journal batch sizes and write times).
  const adminPort = await freePort();
  const token = 'bench-admin-token';
  const configFile = writeConfig({ ...config, admin: { host: '127.0.0.1', port: adminPort, token } });
  if (profDir) fs.mkdirSync(profDir, { recursive: true });
  const prof = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const child = spawn(process.execPath, [...prof, buildDist(), '--config', configFile, '--grpc-port', String(port)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', kill);
  let out = '';
  let listening = false;
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      const s = b.toString();
      // Warnings (journal failures, lost injects) matter for the figures: show them.
      // BENCH_SIDECAR_LOG=1 shows every line.
      for (const line of s.split('\n'))
        if (line && (process.env.BENCH_SIDECAR_LOG === '1' || /"level":(40|50|60)/.test(line)))
          console.error(`[sidecar] ${line.slice(0, 400)}`);
      if (listening) return;
      out += s;
      if (out.includes('sidecar listening')) {
        listening = true;
        out = '';
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`sidecar exited (${code}) before listening:\n${out}`)));
    setTimeout(() => reject(new Error(`sidecar did not start within ${timeoutMs / 1000} s`)), timeoutMs).unref();
  });
  try {
    await ready;
  } catch (e) {
    kill();
    throw e;
  }
  return {
    child,
    port,
    configFile,
    cpu: () => cpuSeconds(child.pid!),
    metrics: () => scrapeMetrics(adminPort),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const force = setTimeout(kill, 20_000);
        await exited;
        clearTimeout(force);
      }
      process.off('exit', kill);
      fs.rmSync(path.dirname(configFile), { recursive: true, force: true });
    },
  };
}

/** CLOCK_MONOTONIC in µs: the time base of V8's .cpuprofile timestamps (for bench/profile-top.ts windows). */
export const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-';

/** A plain-text table with a header row. */
export function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (c ?? '').padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}
