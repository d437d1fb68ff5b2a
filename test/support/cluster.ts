// E2E harness: N private ejabberd 23.01 nodes on loopback, joined in one ejabberd cluster
// (Mnesia over Erlang distribution), each with its own node name, shim credential, ports
// and directory.
//
// How they coexist on one host: the single-node harness runs without epmd (ERL_DIST_PORT),
// but then a node looks for every other node on its own port, so two of them can never
// connect. A cluster therefore gets a private epmd on a free loopback port (ERL_EPMD_PORT in
// each node's ejabberdctl.cfg; never the system's 4369), where each node registers the
// distribution port the kernel gave it. All nodes of a cluster (and their ctl calls) share a
// random cookie of their own (-setcookie), so they do not depend on user ejabberd's
// ~/.erlang.cookie (two first starts in parallel could each write a different one there).
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModuleOptionValue } from '../../scripts/ejabberd-config.js';
import { type CtlResult, canConnect, EjabberdNode, findBeamPids, freePort } from '../../scripts/ejabberd-node.js';
import { newShimCredential, type ShimCredential } from './ejabberd.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type ShimOptions = Record<string, ModuleOptionValue>;

export interface StartClusterOptions {
  domain?: string;
  /** How many nodes (default 2). */
  nodes?: number;
  /**
   * mod_consult's options, for every node or per node index. Lists render as YAML lists
   * (`sidecars: ['127.0.0.1:50051', ...]`). Each node's sidecar_token is its credential's
   * token unless the options set one.
   */
  shimOptions?: ShimOptions | ((index: number) => ShimOptions);
  /** One per node (default: newShimCredential() each); put them all in the sidecar's grpc.shims. */
  credentials?: ShimCredential[];
  /** Load mod_consult (default true). */
  withShim?: boolean;
  /** Where mod_consult's beams are (default <repo>/erlang-shim/ebin). */
  ebinDir?: string;
  loglevel?: 'critical' | 'error' | 'warning' | 'info' | 'debug';
  /** Per node start, join or restart (default 60 s). */
  startTimeoutMs?: number;
}

export interface ClusterNode {
  index: number;
  nodeName: string;
  credential: ShimCredential;
  c2sPort: number;
  /** ejabberd_http: /api (mod_http_api) and /ws (XMPP over WebSocket). */
  httpPort: number;
  /** `xmpp://127.0.0.1:<c2sPort>`, for connectClient's `service`. */
  service: string;
  dir: string;
  logFile: string;
  /** Whether a beam of this node is alive. */
  running(): boolean;
  ctl(...args: string[]): Promise<CtlResult>;
  api(command: string, args: Record<string, unknown>): Promise<unknown>;
  logTail(n?: number): string;
}

export interface Cluster {
  domain: string;
  epmdPort: number;
  nodes: ClusterNode[];
  /** Registers user@domain once (on a running node); Mnesia replicates it to the others. */
  register(user: string, password: string): Promise<void>;
  /** `ejabberdctl list_cluster` on node `index`: the nodes its Mnesia sees running. */
  runningNodes(index: number): Promise<string[]>;
  /** Polls runningNodes(index) until it is exactly `expected` (any order); rejects after timeoutMs. */
  waitRunningNodes(index: number, expected: string[], timeoutMs?: number): Promise<void>;
  /** SIGKILL of that node's beam (a crash: no leave, no Mnesia shutdown); resolves once it is gone. */
  kill(index: number): Promise<void>;
  /**
   * Stops the node if it runs, starts it again with the same name, directory and ports, and
   * resolves once it and every other running node see each other in the cluster.
   */
  restart(index: number): Promise<void>;
  /** Stops every node and the private epmd, removes the directories (KEEP_EJABBERD=1 keeps them). */
  stop(): Promise<void>;
}

/**
 * A private epmd on 127.0.0.1:<port>. It runs under `sh`, which kills it once our end of its
 * stdin closes: on stop(), and also when this test process dies in any way (even SIGKILL).
 */
async function startEpmd(port: number): Promise<{ stop(): Promise<void> }> {
  const child: ChildProcess = spawn(
    'sh',
    ['-c', 'epmd -port "$1" -address 127.0.0.1 & pid=$!; read _; kill $pid; wait $pid', 'sh', String(port)],
    {
      stdio: ['pipe', 'ignore', 'ignore'], // quiet: it complains about our port probes
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    child.stdin?.end();
    await Promise.race([exited, sleep(5000)]);
  };
  for (const t0 = Date.now(); !(await canConnect(port)); ) {
    if (child.exitCode !== null || Date.now() - t0 > 10_000) {
      await stop();
      throw new Error(`epmd on 127.0.0.1:${port} did not start`);
    }
    await sleep(50);
  }
  return { stop };
}

/** Node names in ejabberdctl list_cluster's output (one per line, sometimes quoted). */
function parseNodes(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim().replace(/^'|'$/g, ''))
    .filter((l) => /^[^\s@]+@[^\s@]+$/.test(l));
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && a.every((x) => b.includes(x));

export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const domain = opts.domain ?? 'localhost';
  const count = opts.nodes ?? 2;
  const withShim = opts.withShim ?? true;
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const keep = process.env.KEEP_EJABBERD === '1';
  const epmdPort = await freePort();
  const epmd = await startEpmd(epmdPort);
  const cookie = crypto.randomBytes(16).toString('hex');

  const raw: EjabberdNode[] = [];
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < count; i++) {
    const credential = opts.credentials?.[i] ?? newShimCredential();
    const shim = typeof opts.shimOptions === 'function' ? opts.shimOptions(i) : (opts.shimOptions ?? {});
    const [c2sPort, httpPort] = [await freePort(), await freePort()];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ejabberd-cluster${i + 1}-`));
    const node = new EjabberdNode({
      dir,
      domain,
      c2sPort,
      httpPort,
      distPort: 0, // unused with epmdPort
      epmdPort,
      cookie,
      nodeName: credential.node,
      loglevel: opts.loglevel ?? 'info',
      shimOptions: withShim ? { sidecar_token: credential.token, ...shim } : undefined,
      ebinSources: withShim ? [opts.ebinDir ?? path.join(repoRoot, 'erlang-shim', 'ebin')] : [],
      removeDirOnExit: !keep,
    });
    raw.push(node);
    nodes.push({
      index: i,
      nodeName: node.nodeName,
      credential,
      c2sPort,
      httpPort,
      service: `xmpp://127.0.0.1:${c2sPort}`,
      dir,
      logFile: node.logFile,
      running: () => findBeamPids(node.nodeName).length > 0,
      ctl: (...args) => node.ctl(args),
      api: (command, args) => node.api(command, args),
      logTail: (n = 40) => node.logTail(n),
    });
  }

  const at = (index: number) => {
    const n = raw[index];
    if (!n) throw new Error(`no cluster node ${index} (0..${count - 1})`);
    return n;
  };

  const runningNodes = async (index: number) => {
    const r = await at(index).ctl(['list_cluster'], 20_000);
    if (r.code !== 0) throw new Error(`list_cluster on ${at(index).nodeName} exited ${r.code}: ${r.stdout}${r.stderr}`);
    return parseNodes(r.stdout);
  };

  const waitRunningNodes = async (index: number, expected: string[], ms = 30_000) => {
    const deadline = Date.now() + ms;
    let last: string[] | string = [];
    for (;;) {
      try {
        last = await runningNodes(index);
        if (sameSet(last, expected)) return;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`${at(index).nodeName}: cluster is ${JSON.stringify(last)}, expected ${JSON.stringify(expected)} within ${ms} ms`);
      }
      await sleep(250);
    }
  };

  // Everyone running must see exactly everyone running.
  const waitConverged = async () => {
    const up = nodes.filter((n) => n.running());
    await Promise.all(
      up.map((n) =>
        waitRunningNodes(
          n.index,
          up.map((u) => u.nodeName),
          timeoutMs,
        ),
      ),
    );
  };

  /** Waits for " is started in the node " after `offset` in the node's log and its c2s port. */
  const waitStarted = async (index: number, offset: number) => {
    const n = at(index);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = fs.existsSync(n.logFile) ? fs.readFileSync(n.logFile).subarray(offset).toString('utf8') : '';
      if (/ is started in the node /.test(log) && (await canConnect(n.opts.c2sPort))) return;
      if (Date.now() > deadline) throw new Error(`${n.nodeName} not (re)started within ${timeoutMs} ms\n${n.logTail(40)}`);
      await sleep(100);
    }
  };

  const logSize = (index: number) => (fs.existsSync(at(index).logFile) ? fs.statSync(at(index).logFile).size : 0);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const errors: unknown[] = [];
    await Promise.all(raw.map((n) => n.stop().catch((e) => errors.push(e))));
    await epmd.stop();
    for (const n of raw) {
      if (keep) console.error(`[cluster harness] kept ${n.layout.dir}`);
      else if (findBeamPids(n.nodeName).length === 0) n.removeDir();
    }
    if (errors.length) throw errors[0];
  };

  try {
    for (const n of raw) n.prepare();
    // The first node makes the cluster; the others start on their own (fresh Mnesia) and join it.
    await Promise.all(raw.map((n) => n.start(timeoutMs)));
    for (let i = 1; i < count; i++) {
      // join_cluster stops ejabberd on the joining node, drops its Mnesia schema, copies the
      // cluster's tables and starts ejabberd (and mod_consult) again.
      const since = logSize(i);
      const r = await raw[i]!.ctl(['join_cluster', raw[0]!.nodeName], timeoutMs);
      if (r.code !== 0)
        throw new Error(
          `join_cluster ${raw[0]!.nodeName} on ${raw[i]!.nodeName} exited ${r.code}: ${r.stdout}${r.stderr}\n${raw[i]!.logTail(40)}`,
        );
      await waitStarted(i, since);
    }
    await waitConverged();
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }

  return {
    domain,
    epmdPort,
    nodes,
    async register(user, password) {
      const n = nodes.find((x) => x.running());
      if (!n) throw new Error('no cluster node is running');
      await n.api('register', { user, host: domain, password });
    },
    runningNodes,
    waitRunningNodes,
    async kill(index) {
      const n = at(index);
      for (const pid of findBeamPids(n.nodeName)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      for (const t0 = Date.now(); findBeamPids(n.nodeName).length > 0; await sleep(50)) {
        if (Date.now() - t0 > 10_000) throw new Error(`${n.nodeName} still alive 10 s after SIGKILL`);
      }
    },
    async restart(index) {
      const n = at(index);
      await n.stop();
      // Mnesia's schema on disk still lists the other nodes: it connects to them and loads
      // the shared tables from them, so no join_cluster again.
      await n.start(timeoutMs);
      await waitConverged();
    },
    stop,
  };
}
