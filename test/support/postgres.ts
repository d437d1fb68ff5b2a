// A private, throwaway PostgreSQL cluster on loopback for tests: initdb in a temp dir, own port and socket dir.
// Independent of any system PostgreSQL. As root the server runs as user postgres (it refuses to run as root).
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../scripts/ejabberd-node.js';

const run = promisify(execFile);

export interface Postgres {
  /** postgres://postgres@127.0.0.1:<port>/test */
  url: string;
  stop(): Promise<void>;
  /** A fast shutdown and a start again on the same port and data: every connection is cut. */
  restart(): Promise<void>;
  /** SIGSTOP to the postmaster and every backend: the server hangs (connections stay open, nothing answers). */
  freeze(): void;
  /** SIGCONT to what freeze() stopped. */
  thaw(): void;
}

/** Newest /usr/lib/postgresql/<n>/bin, or $PG_BIN. */
function binDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = '/usr/lib/postgresql';
  const versions = fs.existsSync(base)
    ? fs
        .readdirSync(base)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => +b - +a)
    : [];
  for (const v of versions) if (fs.existsSync(path.join(base, v, 'bin', 'initdb'))) return path.join(base, v, 'bin');
  throw new Error('PostgreSQL server binaries not found (apt-get install -y postgresql, or set PG_BIN)');
}

/** The processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The fields after the command name, which is in parentheses and may hold spaces: state, ppid, …
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      /* ended meanwhile */
    }
  }
  return out;
}

export async function startPostgres(): Promise<Postgres> {
  const bin = binDir();
  const asRoot = process.getuid?.() === 0;
  // As root: run each binary as postgres via runuser.
  const cmd = (prog: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(bin, prog), ...args]] : [path.join(bin, prog), args];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-test-'));
  if (asRoot) execFileSync('chown', ['postgres:', dir]);
  const data = path.join(dir, 'data');
  const port = await freePort();

  let stopped = false;
  let frozen: number[] = [];
  const thaw = () => {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    frozen = [];
  };
  const stopSync = () => {
    // Used on process exit too, so it must be synchronous. Immediate: nothing here needs a clean shutdown.
    if (stopped) return;
    stopped = true;
    thaw(); // a stopped postmaster would not act on pg_ctl stop
    try {
      if (fs.existsSync(path.join(data, 'postmaster.pid')))
        execFileSync(...cmd('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w']), { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
    if (process.env.KEEP_POSTGRES !== '1') fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopSync); // a failing or aborted test run still leaves no server behind

  try {
    await run(...cmd('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C']));
    await run(
      ...cmd('pg_ctl', [
        'start',
        '-w',
        '-t',
        '60',
        '-D',
        data,
        '-l',
        path.join(dir, 'log'),
        '-o',
        `-k ${dir} -c listen_addresses=127.0.0.1 -p ${port} -c fsync=off -c max_connections=100`,
      ]),
    );
    const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query('CREATE DATABASE test');
    await admin.end();
  } catch (err) {
    const log = fs.existsSync(path.join(dir, 'log')) ? fs.readFileSync(path.join(dir, 'log'), 'utf8').slice(-2000) : '';
    stopSync();
    process.removeListener('exit', stopSync);
    throw new Error(`starting PostgreSQL failed: ${(err as Error).message}\n${log}`);
  }

  return {
    url: `postgres://postgres@127.0.0.1:${port}/test`,
    async stop() {
      stopSync();
      process.removeListener('exit', stopSync);
    },
    async restart() {
      await run(...cmd('pg_ctl', ['restart', '-w', '-t', '60', '-m', 'fast', '-D', data, '-l', path.join(dir, 'log')]));
    },
    freeze() {
      const postmaster = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      // The postmaster first, so that it forks no new backend meanwhile.
      process.kill(postmaster, 'SIGSTOP');
      frozen.push(postmaster);
      for (const pid of childrenOf(postmaster)) {
        process.kill(pid, 'SIGSTOP');
        frozen.push(pid);
      }
    },
    thaw,
  };
}
