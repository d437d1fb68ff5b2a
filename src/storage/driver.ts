// The two database drivers behind one small interface: PGlite (embedded, the default) and PostgreSQL (pg).
// Every table lives in the schema `consult` (SCHEMA), first in both drivers' search_path: ejabberd's tables (its MAM
// table is also called `archive`) may share the database.

import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { silent, type Log } from '../domain/log.js';
import { lockDir } from './dir-lock.js';
import { keepListening, type KeptListener } from './pg-listener.js';
import { checkFreeSpace, durableNodefs, failureText, freeBytes, initDir, isFatal, startParams, type SyncHook } from './pglite-disk.js';
export type Row = Record<string, any>;

/** The PostgreSQL schema of every table of ours. */
export const SCHEMA = 'consult';

export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
}

/** The little a store needs from a database; PGlite and pg each implement it. */
export interface Driver extends Queryable {
  /** Runs fn in one transaction on one connection; rolls back if fn throws. */
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  /**
   * PostgreSQL only: calls `onNotify` on every NOTIFY on `channel`, over a connection of its own, until close().
   * That connection is kept up (pg-listener.ts): lost, it is opened again with backoff, and `onNotify` is called once
   * after each reconnect, as a NOTIFY may have been missed meanwhile. Rejects if the first LISTEN fails (it is still
   * tried again in the background); whoever relies on the calls also polls.
   */
  listen?(channel: string, onNotify: () => void): Promise<void>;
  close(): Promise<void>;
  /**
   * The embedded store only: resolves (never rejects) once the database failed beyond repair (a PANIC such as a full
   * disk when the WAL needs a new segment, a WASM abort). From then on every call is refused with that StoreFailed:
   * the process must end, and its supervisor start it again.
   */
  failed?: Promise<StoreFailed>;
  /** The embedded store on disk: bytes free on the file system of its directory. */
  freeBytes?(): number;
}

/**
 * The database cannot be used; `message` says why in words (e.g. "disk full under <dir>: …"). The embedded store:
 * any more (see `failed`). PostgreSQL: not now (no answer within the query timeout, the connection refused or lost).
 */
export class StoreFailed extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'StoreFailed';
  }
}

// Store calls made inside a transaction (e.g. listShops() within withShop) run on that transaction's connection:
// PGlite has only one, so they would wait for themselves, and a pg pool could run dry. Nested transactions become
// savepoints. Like MemoryStore, such calls then see the transaction's own writes.
export function contextual(plain: Queryable, begin: <T>(fn: (q: Queryable) => Promise<T>) => Promise<T>) {
  const current = new AsyncLocalStorage<Queryable>(); // per driver: two stores in one process stay apart
  let savepoints = 0;
  return {
    query: (sql: string, params?: unknown[]) => (current.getStore() ?? plain).query(sql, params),
    async transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
      const q = current.getStore();
      if (!q) return begin((tx) => current.run(tx, () => fn(tx)));
      const sp = `sp${++savepoints}`;
      await q.query(`SAVEPOINT ${sp}`);
      try {
        const result = await fn(q);
        await q.query(`RELEASE SAVEPOINT ${sp}`);
        return result;
      } catch (err) {
        // A connection that failed answers no ROLLBACK: the outer transaction gives it up.
        if (!(err instanceof StoreFailed)) await q.query(`ROLLBACK TO SAVEPOINT ${sp}`);
        throw err;
      }
    },
  };
}

// Upkeep of the embedded store: PostgreSQL in single-user mode never checkpoints and never vacuums on its own.
/** How often it checks whether to CHECKPOINT. */
const CHECKPOINT_CHECK_MS = 30_000;
/** A checkpoint once this much WAL was written since the last one, or once five minutes passed with any. */
const CHECKPOINT_WAL_BYTES = 64 * 1024 * 1024;
const CHECKPOINT_EVERY_MS = 5 * 60_000;
/**
 * VACUUM this often: rows deleted (the journal after a snapshot, the archive's purge) or updated (presence, shops)
 * leave dead tuples that nothing else reclaims, not even page pruning here: the files would grow for ever.
 */
const VACUUM_EVERY_MS = 60 * 60_000;

export interface PgliteOptions {
  /** Told of every fsync/fdatasync, after it returned (tests). */
  onSync?: SyncHook;
}

/**
 * PGlite in `dir` (taken for this process alone: dir-lock.ts; durable: pglite-disk.ts), or in memory without `dir`.
 * Calls reach PGlite one at a time, so that none can follow a call that broke it: after a PANIC the WASM
 * PostgreSQL spins forever on the next call, SIGTERM included.
 */
export async function pgliteDriver(dir?: string, opts: PgliteOptions = {}): Promise<Driver> {
  const { PGlite } = await import('@electric-sql/pglite');
  const defaults = (PGlite as unknown as { defaultStartParams: string[] }).defaultStartParams;
  let options: Record<string, unknown> = { startParams: startParams(defaults, false) };
  let lock: { release(): void } | undefined;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    lock = await lockDir(dir); // before anything in the directory is read or written
    try {
      checkFreeSpace(dir);
      await initDir(dir, pathToFileURL(createRequire(import.meta.url).resolve('@electric-sql/pglite')).href);
    } catch (e) {
      lock.release();
      throw e;
    }
    const { NodeFS } = await import('@electric-sql/pglite/nodefs');
    class DurableNodeFS extends NodeFS {
      async init(...args: Parameters<InstanceType<typeof NodeFS>['init']>) {
        const out = await super.init(...args);
        const preRun = (out.emscriptenOpts.preRun ?? []) as unknown[];
        out.emscriptenOpts.preRun = [...preRun, (mod: Parameters<typeof durableNodefs>[0]) => durableNodefs(mod, opts.onSync)] as never;
        return out;
      }
    }
    options = { fs: new DurableNodeFS(dir), startParams: startParams(defaults, true) };
  }
  let db: InstanceType<typeof PGlite>;
  try {
    db = await PGlite.create(options);
  } catch (e) {
    lock?.release();
    throw new StoreFailed(`${failureText(e, dir)} (while opening it)`, e);
  }

  let failure: StoreFailed | undefined;
  let onFailed: (e: StoreFailed) => void = () => undefined;
  const failed = new Promise<StoreFailed>((resolve) => (onFailed = resolve));
  const fail = (e: unknown): StoreFailed => {
    if (!failure) {
      failure = new StoreFailed(failureText(e, dir), e);
      onFailed(failure);
    }
    return failure;
  };
  const never = new Promise<never>(() => undefined);
  // One call at a time, each one checked: the one after a fatal error is refused before it reaches PGlite.
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(() => {
      if (failure) throw failure;
      return fn().catch((e) => {
        throw isFatal(e) ? fail(e) : e;
      });
    });
    tail = run.catch(() => undefined);
    return run;
  };
  const plain: Queryable = { query: (sql, params) => exclusive(async () => (await db.query<Row>(sql, params)).rows) };
  const begin = <T>(fn: (q: Queryable) => Promise<T>): Promise<T> =>
    exclusive(
      () =>
        new Promise<T>((resolve, reject) => {
          // After a fatal error inside, PGlite's transaction() would ROLLBACK (and spin): it is left waiting forever.
          const inTx = (tx: { query<R>(sql: string, params?: unknown[]): Promise<{ rows: R[] }> }): Queryable => ({
            async query(sql, params) {
              if (failure) return never;
              try {
                return (await tx.query<Row>(sql, params)).rows;
              } catch (e) {
                if (!isFatal(e)) throw e;
                reject(fail(e));
                return never;
              }
            },
          });
          db.transaction((tx) => fn(inTx(tx))).then(resolve, reject);
        }),
    );

  let upkeep: NodeJS.Timeout | undefined;
  if (dir) {
    let checkpointAt = Date.now();
    let vacuumAt = Date.now();
    upkeep = setInterval(() => {
      void exclusive(async () => {
        if (Date.now() - vacuumAt >= VACUUM_EVERY_MS) {
          vacuumAt = Date.now();
          await db.query('VACUUM');
        }
        const [{ since }] = (await db.query<Row>(`SELECT (pg_current_wal_lsn() - redo_lsn)::float8 AS since FROM pg_control_checkpoint()`))
          .rows;
        // The checkpoint record itself is the WAL written after the last checkpoint's redo point: ignore that little.
        if (since >= CHECKPOINT_WAL_BYTES || (since > 1024 && Date.now() - checkpointAt >= CHECKPOINT_EVERY_MS)) {
          await db.query('CHECKPOINT');
          checkpointAt = Date.now();
        }
      }).catch(() => undefined); // fatal: `failed` says so; otherwise the next check tries again
    }, CHECKPOINT_CHECK_MS);
    upkeep.unref();
  }

  return {
    ...contextual(plain, begin),
    failed,
    ...(dir ? { freeBytes: () => freeBytes(dir) } : {}),
    close: async () => {
      clearInterval(upkeep);
      try {
        // A broken PGlite is not called again, not even to close it: the process is about to end.
        if (!failure) await exclusive(() => db.close());
      } finally {
        lock?.release();
      }
    },
  };
}

/** PostgreSQL's timeouts: well below the lease period (5 s), so that a round or a write fails before a lease ends. */
export interface PgOptions {
  /** Connecting, and waiting for a pooled connection, may take this long. */
  connectTimeoutMs?: number;
  /**
   * A statement may take this long: the server cancels it then (statement_timeout), and the client gives up on it
   * too, since a server that hangs (stopped, its host frozen) cancels nothing.
   */
  queryTimeoutMs?: number;
  /** Where the announcement listener says that it lost its connection, and that it is back. */
  log?: Log;
}

export const PG_TIMEOUT_DEFAULTS = { connectTimeoutMs: 2000, queryTimeoutMs: 2000 };

/** How often the announcement listener's idle connection is checked with a query. */
const LISTEN_PING_MS = 5000;

export async function pgDriver(url: string, opts: PgOptions = {}): Promise<Driver> {
  const { default: pg } = await import('pg');
  const { connectTimeoutMs, queryTimeoutMs } = { ...PG_TIMEOUT_DEFAULTS, ...opts };
  const settings = {
    ...withSearchPath(url),
    connectionTimeoutMillis: connectTimeoutMs,
    query_timeout: queryTimeoutMs,
    statement_timeout: queryTimeoutMs,
    keepAlive: true, // a peer gone without a word (its host down, a cut link) is noticed in the end
    keepAliveInitialDelayMillis: 10_000,
  };
  const failure = (e: unknown) => pgFailure(e, queryTimeoutMs) ?? e;
  const pool = new pg.Pool(settings);
  pool.on('error', () => undefined); // an idle client lost its server: the pool drops it, the next query reports
  const begin = async <T>(fn: (q: Queryable) => Promise<T>): Promise<T> => {
    const client = await pool.connect().catch((e) => Promise.reject(failure(e)));
    const q: Queryable = { query: async (sql, params) => (await client.query(sql, params).catch((e) => Promise.reject(failure(e)))).rows };
    try {
      await q.query('BEGIN');
      const result = await fn(q);
      await q.query('COMMIT');
      client.release();
      return result;
    } catch (err) {
      // A client that timed out or lost its server is destroyed (its ROLLBACK would only wait as long again); one
      // whose ROLLBACK fails is broken too: neither goes back to the pool.
      if (err instanceof StoreFailed) client.release(err);
      else
        await q.query('ROLLBACK').then(
          () => client.release(),
          (e: Error) => client.release(e),
        );
      throw err;
    }
  };
  const listeners: KeptListener[] = [];
  return {
    ...contextual({ query: async (sql, params) => (await pool.query(sql, params).catch((e) => Promise.reject(failure(e)))).rows }, begin),
    async listen(channel, onNotify) {
      const listener = keepListening({
        channel,
        onNotify,
        newClient: () => new pg.Client(settings),
        log: opts.log ?? silent,
        pingMs: LISTEN_PING_MS,
      });
      listeners.push(listener);
      await listener.ready;
    },
    close: async () => {
      await Promise.all(listeners.map((l) => l.close()));
      await pool.end();
    },
  };
}

/**
 * A pg error that says the server is out of reach (no answer in time, the connection refused or lost, the server
 * shutting down) as a StoreFailed; undefined for the others (an SQL error, a constraint).
 */
export function pgFailure(e: unknown, queryTimeoutMs: number): StoreFailed | undefined {
  if (e instanceof StoreFailed) return e;
  const err = (e ?? {}) as { message?: string; code?: string; syscall?: string; severity?: string };
  const message = String(err.message ?? e);
  if (err.severity !== undefined) {
    // The server answered with an error: only these say that it cannot serve us now.
    if (err.code === '57014' && /statement timeout/.test(message))
      return new StoreFailed(`PostgreSQL cancelled a statement that ran past ${queryTimeoutMs} ms (postgres.queryTimeoutMs)`, e);
    if (/^(08|57P)/.test(err.code ?? '')) return new StoreFailed(`cannot reach PostgreSQL: ${message}`, e);
    return undefined;
  }
  if (message === 'Query read timeout')
    return new StoreFailed(`PostgreSQL did not answer within ${queryTimeoutMs} ms (postgres.queryTimeoutMs)`, e);
  if (err.syscall !== undefined || /timeout|Connection terminated|not queryable/i.test(message))
    return new StoreFailed(`cannot reach PostgreSQL: ${message}`, e);
  return undefined;
}

/**
 * The pool's connection settings with our schema first in the search path, as a startup option (no extra round
 * trip). pg lets a connection string's own parameters win over the config's, so `options` given in the URL are kept
 * and ours appended there.
 */
export function withSearchPath(url: string): { connectionString: string; options?: string } {
  const mine = `-c search_path=${SCHEMA}`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { connectionString: url, options: mine };
  }
  const given = u.searchParams.get('options');
  if (given === null) return { connectionString: url, options: mine };
  u.searchParams.set('options', `${given} ${mine}`);
  return { connectionString: u.toString() };
}
