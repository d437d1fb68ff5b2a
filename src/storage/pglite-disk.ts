// The embedded store's directory: what PGlite leaves undone for it to be durable and to fail honestly.
//  - Durable. PGlite starts PostgreSQL with fsync off (-F), and its file system layer (Emscripten's NODEFS) has no
//    fsync at all: a commit reaches the page cache, not the disk. Here PostgreSQL runs with fsync on, and NODEFS gets
//    an fsync that reaches the disk, so PostgreSQL's own rules apply: the WAL is synced before COMMIT returns, a new
//    WAL segment and its directory when created, data files at a checkpoint before the WAL covering them is
//    recycled. wal_sync_method=fsync because Emscripten's fdatasync() is a no-op; WAL files are then synced with
//    fdatasync, the rest with fsync. A fresh directory (initdb, which PGlite writes without any sync) is built
//    beside, synced file by file, then moved in, PG_VERSION last.
//  - Checkpoints. A single-user PostgreSQL (which PGlite is) never checkpoints on its own, whatever max_wal_size
//    says: the WAL would grow until the disk is full and a crash would replay all of it. driver.ts runs CHECKPOINT.
//  - Failures. A PANIC (e.g. the disk is full when the WAL needs a new segment) or an abort leaves the WASM
//    PostgreSQL unusable: the next call into it spins forever on the event loop. isFatal() tells those apart.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

/** A start with less free space under the directory is refused (a WAL segment is 16 MiB; a new database ~40 MiB). */
export const MIN_FREE_BYTES = 64 * 1024 * 1024;

/** Bytes available to this process on the file system of `dir`. */
export function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** Refuses a start on a (nearly) full disk, before anything in the directory is touched. */
export function checkFreeSpace(dir: string): void {
  const free = freeBytes(dir);
  if (free < MIN_FREE_BYTES)
    throw new Error(
      `disk full under ${dir}: ${mib(free)} free, the embedded store needs at least ${mib(MIN_FREE_BYTES)} to start; free some space and start again`,
    );
}

/** PostgreSQL's buffer pool inside the WASM heap (its default is 128MB): the journal appends, it rarely reads. */
export const SHARED_BUFFERS = '16MB';

/**
 * PGlite's start parameters for a store on disk (or in memory, `durable` false): fsync on, our schema first in the
 * search path, and a smaller buffer pool (see docs/state.md for the memory it saves).
 */
export function startParams(defaults: readonly string[], durable: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < defaults.length; i++) {
    if (defaults[i] === '-F' && durable) continue; // -F is fsync=off
    if (defaults[i] === '-c' && /^(search_path|shared_buffers|wal_sync_method|min_wal_size)=/.test(defaults[i + 1] ?? '')) {
      i++;
      continue;
    }
    out.push(defaults[i]);
  }
  const set = (s: string) => out.push('-c', s);
  set('search_path=consult');
  set(`shared_buffers=${SHARED_BUFFERS}`);
  if (durable) {
    set('wal_sync_method=fsync');
    set('min_wal_size=32MB'); // two recycled WAL segments kept, not five
  }
  return out;
}

interface Stream {
  nfd: number;
  path: string;
}
interface NodeFsModule {
  NODEFS: { stream_ops: { fsync?: (s: Stream) => number }; tryFSOperation<T>(f: () => T): T };
}

/** What each sync is told (tests count them); `path` is inside PGDATA, e.g. `/pglite/data/pg_wal/000000010000000000000001`. */
export type SyncHook = (path: string) => void;

/** Gives NODEFS an fsync that reaches the disk. Called from PGlite's preRun, before PostgreSQL starts. */
export function durableNodefs(mod: NodeFsModule, onSync?: SyncHook): void {
  mod.NODEFS.stream_ops.fsync = (stream) => {
    const wal = stream.path.includes('/pg_wal/');
    // A failed sync throws an ErrnoError into PostgreSQL, which PANICs (data_sync_retry is off): never ignored.
    mod.NODEFS.tryFSOperation(() => (wal ? fs.fdatasyncSync(stream.nfd) : fs.fsyncSync(stream.nfd)));
    onSync?.(stream.path);
    return 0;
  };
}

/** fsyncs every file and directory under `dir`, deepest first. */
export function syncTree(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) syncTree(p);
    else if (e.isFile()) syncPath(p);
  }
  syncPath(dir);
}

function syncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const INIT = '.initdb';

/**
 * A directory without a database gets one: initdb in a child process (it needs ~600 MB that a process never gives
 * back), into `dir/.initdb`, synced, then moved in with PG_VERSION last, so a crash half-way leaves no half database.
 */
export async function initDir(dir: string, pgliteUrl: string): Promise<void> {
  if (fs.existsSync(path.join(dir, 'PG_VERSION'))) return;
  const tmp = path.join(dir, INIT);
  fs.rmSync(tmp, { recursive: true, force: true }); // a crash during an earlier init
  const stray = fs.readdirSync(dir).filter((n) => n !== INIT);
  if (stray.length > 0)
    throw new Error(`${dir} holds no database (no PG_VERSION) but is not empty (${stray.slice(0, 5).join(', ')}): move its files away`);
  const code = `const { PGlite } = await import(${JSON.stringify(pgliteUrl)}); const db = await PGlite.create(${JSON.stringify(tmp)}); await db.close();`;
  try {
    await promisify(execFile)(process.execPath, ['--input-type=module', '-e', code], { timeout: 300_000, maxBuffer: 4 << 20 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    fs.rmSync(tmp, { recursive: true, force: true });
    const text = `${err.stderr ?? ''} ${err.message}`;
    if (/ENOSPC|No space left|errno":51|errno: 51/.test(text))
      throw new Error(`disk full under ${dir}: a new database could not be created`);
    throw new Error(`creating the database under ${dir} failed: ${text.trim().slice(-2000)}`);
  }
  syncTree(tmp);
  const names = fs.readdirSync(tmp).sort((a, b) => Number(a === 'PG_VERSION') - Number(b === 'PG_VERSION'));
  for (const n of names) fs.renameSync(path.join(tmp, n), path.join(dir, n));
  fs.rmdirSync(tmp);
  syncPath(dir);
}

/**
 * After this error the embedded PostgreSQL must not be called again: a PANIC or FATAL, a WASM abort or exit, and a
 * full disk or an I/O error even as a mere ERROR (53100, 58030): the WASM build does not recover from those (the next
 * write PANICs with "XLogBeginInsert was already called"), so the store is no longer to be trusted.
 */
export function isFatal(e: unknown): boolean {
  const err = e as { severity?: string; code?: string; name?: string; message?: string } | undefined;
  if (!err || typeof err !== 'object') return false;
  if (err.severity === 'PANIC' || err.severity === 'FATAL' || err.code === '53100' || err.code === '58030') return true;
  return err.name === 'RuntimeError' || err.name === 'ExitStatus' || err.name === 'ErrnoError' || /\bAborted\(/.test(err.message ?? '');
}

/** The embedded store's failure in words, for the log line before the process exits. */
export function failureText(e: unknown, dir: string | undefined): string {
  const err = e as { code?: string; errno?: number; message?: string; severity?: string; name?: string };
  const where = dir ?? 'memory';
  const what = err?.message || err?.name || String(e);
  let left = '';
  try {
    left = dir ? ` (${mib(freeBytes(dir))} free)` : '';
  } catch {
    /* the directory is gone: say what we know */
  }
  if (err?.code === '53100' || err?.errno === 51 || /No space left on device|ENOSPC/.test(what))
    return `disk full under ${where}${left}: ${what}`;
  return `the embedded store under ${where}${left} failed (${err?.severity ?? err?.name ?? 'error'}): ${what}`;
}
