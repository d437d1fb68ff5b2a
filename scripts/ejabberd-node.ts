// Lifecycle of a private ejabberd node (Debian's stock ejabberd 23.01) running
// from its own directory on loopback: prepare dir, start, wait, ctl, HTTP API,
// stop. Shared by test/support/ejabberd.ts and scripts/ejabberd-up.ts.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  ctlBaseArgs,
  nodeLayout,
  renderEjabberdctlCfg,
  renderEjabberdYml,
  type EjabberdConfigOptions,
  type NodeLayout,
} from './ejabberd-config.js';

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

const EJABBERDCTL = process.env.EJABBERDCTL ?? (fs.existsSync('/usr/sbin/ejabberdctl') ? '/usr/sbin/ejabberdctl' : 'ejabberdctl');
const RUN_USER = 'ejabberd';

/** A free TCP port on 127.0.0.1 (bind to 0, read it back, release). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** PIDs of beam processes started as exactly this node (`-sname/-name <node>`). */
export function findBeamPids(nodeName: string): number[] {
  const pids: number[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${ent}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!argv[0] || !/beam/.test(path.basename(argv[0]))) continue;
    for (let i = 0; i < argv.length - 1; i++) {
      if ((argv[i] === '-sname' || argv[i] === '-name') && argv[i + 1] === nodeName) {
        pids.push(Number(ent));
        break;
      }
    }
  }
  return pids;
}

function tailLines(file: string, n: number): string {
  try {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines.slice(-n).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

// Log lines that mean "this node will not come up correctly".
const FATAL_LOG = /\[critical\]|\[error\].*(config|option|yml|yaml|Failed to (start|load))/i;

export interface NodeOptions extends EjabberdConfigOptions {
  dir: string;
  nodeName: string;
  distPort: number;
  /** Register with the epmd on this loopback port (clusters on one host; see renderEjabberdctlCfg). */
  epmdPort?: number;
  /** Erlang cookie (-setcookie) for the node and its ctl calls; default user ejabberd's ~/.erlang.cookie. */
  cookie?: string;
  /** More flags for the node's VM (ERL_OPTIONS), e.g. `+sbwt none`. */
  erlFlags?: string;
  /** Directories whose *.beam/*.app files are copied into <dir>/shim/ebin (on -pa). */
  ebinSources?: string[];
  /** Temp dirs: also delete the directory if the process exits with the node still live. */
  removeDirOnExit?: boolean;
}

/** Live nodes of this process, killed on exit so a crashed test leaves nothing behind. */
const liveNodes = new Set<EjabberdNode>();
process.on('exit', () => {
  for (const n of liveNodes) {
    for (const pid of findBeamPids(n.nodeName)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (n.opts.removeDirOnExit) n.removeDir();
  }
});
// Ctrl-C / kill of a test run: exit normally so the handler above runs.
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(sig, () => process.exit(code));
}

export class EjabberdNode {
  readonly layout: NodeLayout;
  readonly nodeName: string;
  readonly opts: NodeOptions;

  constructor(opts: NodeOptions) {
    this.opts = opts;
    this.nodeName = opts.nodeName;
    this.layout = nodeLayout(opts.dir);
  }

  get logFile(): string {
    return this.layout.logFile;
  }

  /** Write config, copy beams and inetrc, hand the directory to user ejabberd. */
  prepare(): void {
    const L = this.layout;
    for (const d of [L.dir, L.logsDir, L.spoolDir, L.ebinDir]) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(L.configPath, renderEjabberdYml(this.opts));
    fs.writeFileSync(L.ctlConfigPath, renderEjabberdctlCfg(L, this.opts));
    // Without it every ctl call logs "inetrc not found".
    if (fs.existsSync('/etc/ejabberd/inetrc')) fs.copyFileSync('/etc/ejabberd/inetrc', L.inetrcPath);
    // Copy beams instead of -pa'ing the repo: user ejabberd may not be able to
    // read the checkout (e.g. under /root), and tests get a stable snapshot.
    for (const src of this.opts.ebinSources ?? []) {
      if (!fs.existsSync(src)) throw new Error(`ebin dir ${src} does not exist (run make -C erlang-shim?)`);
      for (const f of fs.readdirSync(src)) {
        if (/\.(beam|app)$/.test(f)) fs.copyFileSync(path.join(src, f), path.join(L.ebinDir, f));
      }
    }
    // ejabberdctl su's to `ejabberd` when run as root; that user must own everything.
    if (process.getuid?.() === 0) {
      execFileSync('chown', ['-R', `${RUN_USER}:${RUN_USER}`, L.dir]);
      try {
        execFileSync('su', ['-s', '/bin/sh', '-c', 'cd "$0" && test -w spool', RUN_USER, '--', L.dir], { stdio: 'ignore' });
      } catch {
        throw new Error(`user ${RUN_USER} cannot access ${L.dir} (is a parent directory private?); use another directory`);
      }
    }
  }

  ctl(args: string[], timeoutMs = 60_000): Promise<CtlResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(EJABBERDCTL, [...ctlBaseArgs(this.layout), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
  }

  /** POST /api/<command> on the loopback mod_http_api listener (no ~0.6 s ctl VM start). */
  async api(command: string, args: Record<string, unknown>): Promise<unknown> {
    if (!this.opts.httpPort) throw new Error('node has no httpPort');
    const res = await fetch(`http://127.0.0.1:${this.opts.httpPort}/api/${command}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(args),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`api ${command} -> HTTP ${res.status}: ${text}`);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }

  /** Register a user via the HTTP API when available, else ejabberdctl. */
  async register(user: string, password: string, domain = this.opts.domain): Promise<void> {
    if (this.opts.httpPort) {
      await this.api('register', { user, host: domain, password });
      return;
    }
    const r = await this.ctl(['register', user, domain, password]);
    if (r.code !== 0) throw new Error(`register ${user}@${domain} failed (${r.code}): ${r.stdout}${r.stderr}`);
  }

  logTail(n = 40): string {
    return tailLines(this.layout.logFile, n);
  }

  private failure(msg: string): Error {
    const crash = path.join(this.layout.logsDir, 'crash.log');
    const extra = fs.existsSync(crash) && fs.statSync(crash).size > 0 ? `\n--- crash.log ---\n${tailLines(crash, 20)}` : '';
    return new Error(`${msg}\n--- ${this.layout.logFile} (tail) ---\n${this.logTail(40)}${extra}`);
  }

  /**
   * `ejabberdctl start` returns 0 even when config validation kills the node,
   * so watch the log for "is started" / fatal lines and the beam process.
   */
  async start(timeoutMs = 60_000): Promise<void> {
    if (findBeamPids(this.nodeName).length) throw new Error(`node ${this.nodeName} already running`);
    liveNodes.add(this);
    // Only this start's lines count: a kept or restarted node's log has older ones.
    let offset = 0;
    try {
      offset = fs.statSync(this.layout.logFile).size;
    } catch {
      /* no log yet */
    }
    const r = await this.ctl(['start']);
    if (r.code !== 0) throw this.failure(`ejabberdctl start exited ${r.code}: ${r.stdout}${r.stderr}`);
    const t0 = Date.now();
    let sawBeam = false;
    for (;;) {
      let log = '';
      try {
        log = fs.readFileSync(this.layout.logFile).subarray(offset).toString('utf8');
      } catch {
        /* not yet */
      }
      const fatal = log.split('\n').find((l) => FATAL_LOG.test(l));
      if (fatal) throw this.failure(`ejabberd ${this.nodeName} failed to start: ${fatal}`);
      if (/ is started in the node /.test(log) && (await canConnect(this.opts.c2sPort))) return;
      const alive = findBeamPids(this.nodeName).length > 0;
      if (alive) sawBeam = true;
      else if (sawBeam || Date.now() - t0 > 5000) {
        throw this.failure(`ejabberd ${this.nodeName} exited during startup`);
      }
      if (Date.now() - t0 > timeoutMs) throw this.failure(`ejabberd ${this.nodeName} not started after ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** ejabberdctl stop; then SIGTERM/SIGKILL whatever is left of THIS node. */
  async stop(): Promise<void> {
    try {
      if (findBeamPids(this.nodeName).length === 0) return;
      // ~0.6 s of ctl VM start + ~1-2 s of orderly shutdown.
      await this.ctl(['stop'], 20_000).catch(() => undefined);
      if (await this.waitGone(15_000)) return;
      for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
        for (const pid of findBeamPids(this.nodeName)) {
          try {
            process.kill(pid, sig);
          } catch {
            /* already gone */
          }
        }
        if (await this.waitGone(5_000)) return;
      }
      throw new Error(`could not stop ejabberd node ${this.nodeName}`);
    } finally {
      if (findBeamPids(this.nodeName).length === 0) liveNodes.delete(this);
    }
  }

  private async waitGone(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (findBeamPids(this.nodeName).length === 0) return true;
      await sleep(100);
    }
    return findBeamPids(this.nodeName).length === 0;
  }

  /** Leave the node running after this process exits (CLI `up`). */
  detach(): void {
    liveNodes.delete(this);
  }

  removeDir(): void {
    fs.rmSync(this.layout.dir, { recursive: true, force: true });
  }
}
