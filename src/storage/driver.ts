// The two database drivers behind one small interface: PGlite (embedded, the default) and PostgreSQL (pg).

import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
export type Row = Record<string, any>;

export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
}

/** The little a store needs from a database; PGlite and pg each implement it. */
export interface Driver extends Queryable {
  /** Runs fn in one transaction on one connection; rolls back if fn throws. */
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  /**
   * PostgreSQL only: calls `onNotify` on every NOTIFY on `channel`, over a connection of its own, until close().
   * Best effort: if that connection fails, the calls stop (whoever relies on them also polls).
   */
  listen?(channel: string, onNotify: () => void): Promise<void>;
  close(): Promise<void>;
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
        await q.query(`ROLLBACK TO SAVEPOINT ${sp}`);
        throw err;
      }
    },
  };
}

export async function pgliteDriver(dir?: string): Promise<Driver> {
  const { PGlite } = await import('@electric-sql/pglite');
  if (dir) mkdirSync(dir, { recursive: true });
  const db = await PGlite.create(dir);
  const wrap = (c: { query<R>(sql: string, params?: unknown[]): Promise<{ rows: R[] }> }): Queryable => ({
    query: async (sql, params) => (await c.query<Row>(sql, params)).rows,
  });
  return {
    ...contextual(wrap(db), (fn) => db.transaction((tx) => fn(wrap(tx)))),
    close: () => db.close(),
  };
}

export async function pgDriver(url: string): Promise<Driver> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url });
  pool.on('error', () => undefined); // an idle client lost its server: the pool drops it, the next query reports
  const begin = async <T>(fn: (q: Queryable) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn({ query: async (sql, params) => (await client.query(sql, params)).rows });
      await client.query('COMMIT');
      client.release();
      return result;
    } catch (err) {
      // A client whose ROLLBACK fails is broken: destroy it rather than return it to the pool.
      await client.query('ROLLBACK').then(
        () => client.release(),
        (e: Error) => client.release(e),
      );
      throw err;
    }
  };
  const listeners: InstanceType<typeof pg.Client>[] = [];
  return {
    ...contextual({ query: async (sql, params) => (await pool.query(sql, params)).rows }, begin),
    async listen(channel, onNotify) {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => void client.end().catch(() => undefined)); // lost: the callers' polling goes on
      client.on('notification', () => onNotify());
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
      listeners.push(client);
    },
    close: async () => {
      await Promise.all(listeners.map((c) => c.end().catch(() => undefined)));
      await pool.end();
    },
  };
}
