// SQL Store: one schema and one set of queries for PGlite (embedded, the default) and PostgreSQL (pg).
// Behaves exactly like MemoryStore; `seq` columns keep its insertion order (an upsert keeps its row's place).
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { KeyedLock } from './lock.js';
import { MemoryStore } from './memory-store.js';
import type { Agent, AgentResource, Membership, QueueEntry, Session, Shop, ShopTx, Store, StoredStanza } from './store.js';

type Row = Record<string, any>;
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
}
/** The little a store needs from a database; PGlite and pg each implement it. */
export interface Driver extends Queryable {
  /** Runs fn in one transaction on one connection; rolls back if fn throws. */
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

// Store calls made inside a transaction (e.g. listShops() within withShop) run on that transaction's connection:
// PGlite has only one, so they would wait for themselves, and a pg pool could run dry. Nested transactions become
// savepoints. Like MemoryStore, such calls then see the transaction's own writes.
function contextual(plain: Queryable, begin: <T>(fn: (q: Queryable) => Promise<T>) => Promise<T>) {
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
  const wrap = (c: { query<R>(sql: string, params?: unknown[]): Promise<{ rows: R[] }> }): Queryable =>
    ({ query: async (sql, params) => (await c.query<Row>(sql, params)).rows });
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
      await client.query('ROLLBACK').then(() => client.release(), (e: Error) => client.release(e));
      throw err;
    }
  };
  return {
    ...contextual({ query: async (sql, params) => (await pool.query(sql, params)).rows }, begin),
    close: () => pool.end(),
  };
}

export const SCHEMA_VERSION = 1;
// Timestamps are double precision: ms fit exactly and both drivers return JS numbers (int8 would be strings in pg).
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS shops (jid text PRIMARY KEY, name text NOT NULL, welcome text NOT NULL,
     no_agent_text text NOT NULL, strategy text NOT NULL, queue_enabled boolean NOT NULL, seq bigserial)`,
  `CREATE TABLE IF NOT EXISTS memberships (shop text, agent text, max_sessions int NOT NULL,
     joined_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, agent))`,
  `CREATE TABLE IF NOT EXISTS agents (jid text PRIMARY KEY, status text NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS resources (agent text, resource text, node text NOT NULL, show text NOT NULL,
     priority int NOT NULL, seq bigserial, PRIMARY KEY (agent, resource))`,
  `CREATE TABLE IF NOT EXISTS sessions (shop text, visitor text, agent text NOT NULL, started_at double precision NOT NULL,
     last_visitor_at double precision NOT NULL, last_agent_at double precision NOT NULL,
     reminded_at double precision NOT NULL, orphaned_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, visitor))`,
  `CREATE TABLE IF NOT EXISTS queue (shop text, visitor text, enqueued_at double precision NOT NULL, seq bigserial,
     PRIMARY KEY (shop, visitor))`,
  `CREATE TABLE IF NOT EXISTS held (seq bigserial PRIMARY KEY, shop text NOT NULL, visitor text NOT NULL,
     at double precision NOT NULL, xml text NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS held_visitor ON held (shop, visitor, seq)`,
  `CREATE TABLE IF NOT EXISTS assigned (shop text, agent text, at double precision NOT NULL, seq bigserial,
     PRIMARY KEY (shop, agent))`,
  `CREATE TABLE IF NOT EXISTS sticky (shop text, visitor text, agent text NOT NULL, until_at double precision NOT NULL,
     PRIMARY KEY (shop, visitor))`,
  `CREATE TABLE IF NOT EXISTS history (seq bigserial PRIMARY KEY, shop text NOT NULL, visitor text NOT NULL,
     at double precision NOT NULL, xml text NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS history_visitor ON history (shop, visitor, seq)`,
  // Set to a fresh random value by every transaction that writes sessions, so other sidecars know their session
  // cache is stale. Random rather than a counter: a rolled-back value can never come back and look current.
  `CREATE TABLE IF NOT EXISTS shop_version (shop text PRIMARY KEY, version text NOT NULL)`,
];

const SESSION_COLS = `shop, visitor, agent, started_at, last_visitor_at, last_agent_at, reminded_at, orphaned_at`;
const toSession = (r: Row): Session => ({
  visitor: r.visitor, shop: r.shop, agent: r.agent, startedAt: r.started_at, lastVisitorAt: r.last_visitor_at,
  lastAgentAt: r.last_agent_at, remindedAt: r.reminded_at, orphanedAt: r.orphaned_at,
});
const toShop = (r: Row): Shop => ({
  jid: r.jid, name: r.name, welcome: r.welcome, noAgentText: r.no_agent_text, strategy: r.strategy, queueEnabled: r.queue_enabled,
});
const toStanza = (r: Row): StoredStanza => ({ at: r.at, xml: r.xml });

interface CachedSession { s: Session | undefined } // lru-cache cannot hold undefined: wrap it, so misses cache too

export class SqlStore implements Store {
  private readonly local = new KeyedLock(); // same-process callers queue here instead of each holding a pooled connection
  private readonly cache: LRUCache<string, CachedSession>;
  // Per shop: the shop_version our cache entries match, and a generation in the cache keys (bumping it drops them all).
  private readonly cacheState = new Map<string, { version: string | undefined; gen: number }>();

  private constructor(private readonly db: Driver, cacheSize: number) {
    this.cache = new LRUCache({ max: cacheSize });
  }

  static async open(db: Driver, opts: { cacheSize?: number } = {}): Promise<SqlStore> {
    await db.transaction(async (q) => {
      // Two sidecars starting together would race on CREATE TABLE IF NOT EXISTS: serialise them.
      await q.query(`SELECT pg_advisory_xact_lock(hashtext('consult-router schema'))`);
      for (const sql of SCHEMA) await q.query(sql);
      await q.query(`INSERT INTO schema_version (id, version) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, [SCHEMA_VERSION]);
      const [{ version }] = await q.query(`SELECT version FROM schema_version`);
      if (version !== SCHEMA_VERSION) throw new Error(`database schema version ${version}, this code knows ${SCHEMA_VERSION}`);
    }).catch(async (err) => {
      await db.close().catch(() => undefined);
      throw err;
    });
    return new SqlStore(db, opts.cacheSize ?? 10_000);
  }

  withShop<T>(shop: string, work: (tx: ShopTx) => Promise<T>): Promise<T> {
    return this.local.run(shop, async () => {
      const state = this.cacheState.get(shop) ?? this.cacheState.set(shop, { version: undefined, gen: 0 }).get(shop)!;
      let newVersion: string | undefined;
      try {
        const result = await this.db.transaction(async (q) => {
          // The lock is held until commit, in every process on this database. The version is read by a later
          // statement, so (read committed) it sees what the previous holder committed.
          await q.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [shop]);
          const [row] = await q.query(`SELECT version FROM shop_version WHERE shop = $1`, [shop]);
          const version: string = row?.version ?? '';
          if (version !== state.version) {
            state.gen++; // another sidecar (or a rolled-back transaction) changed sessions: forget ours
            state.version = version;
          }
          const bump = async () => {
            if (newVersion !== undefined) return; // once per transaction is enough: others compare at their start
            const [r] = await q.query(
              `INSERT INTO shop_version (shop, version) VALUES ($1, gen_random_uuid()::text)
               ON CONFLICT (shop) DO UPDATE SET version = excluded.version RETURNING version`, [shop]);
            newVersion = r.version;
          };
          return work(this.tx(q, shop, (v) => `${shop}\n${state.gen}\n${v}`, bump));
        });
        if (newVersion !== undefined) state.version = newVersion; // our own writes are already in the cache
        return result;
      } catch (err) {
        state.gen++; // the cache may hold writes that were rolled back
        state.version = undefined;
        throw err;
      }
    });
  }

  private tx(q: Queryable, shop: string, key: (visitor: string) => string, bump: () => Promise<void>): ShopTx {
    return {
      getSession: async (visitor) => {
        let hit = this.cache.get(key(visitor));
        if (!hit) {
          const [r] = await q.query(`SELECT ${SESSION_COLS} FROM sessions WHERE shop = $1 AND visitor = $2`, [shop, visitor]);
          hit = { s: r && toSession(r) };
          this.cache.set(key(visitor), hit);
        }
        return hit.s && { ...hit.s }; // sessions are flat: a shallow copy is a full copy
      },
      putSession: async (s) => {
        await bump();
        await q.query(
          `INSERT INTO sessions (${SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (shop, visitor) DO UPDATE SET agent = $3, started_at = $4, last_visitor_at = $5,
             last_agent_at = $6, reminded_at = $7, orphaned_at = $8`,
          [shop, s.visitor, s.agent, s.startedAt, s.lastVisitorAt, s.lastAgentAt, s.remindedAt, s.orphanedAt]);
        this.cache.set(key(s.visitor), { s: { ...s, shop } });
      },
      deleteSession: async (visitor) => {
        await bump();
        await q.query(`DELETE FROM sessions WHERE shop = $1 AND visitor = $2`, [shop, visitor]);
        this.cache.set(key(visitor), { s: undefined });
      },
      sessions: async () =>
        (await q.query(`SELECT ${SESSION_COLS} FROM sessions WHERE shop = $1 ORDER BY seq`, [shop])).map(toSession),

      queue: async () => (await q.query(`SELECT shop, visitor, enqueued_at FROM queue WHERE shop = $1 ORDER BY seq`, [shop]))
        .map((r): QueueEntry => ({ visitor: r.visitor, shop: r.shop, enqueuedAt: r.enqueued_at })),
      enqueue: async (visitor, at) => void await q.query(
        `INSERT INTO queue (shop, visitor, enqueued_at) VALUES ($1, $2, $3) ON CONFLICT (shop, visitor) DO NOTHING`,
        [shop, visitor, at]),
      dequeue: async (visitor) => void await q.query(`DELETE FROM queue WHERE shop = $1 AND visitor = $2`, [shop, visitor]),

      hold: async (visitor, st) => void await q.query(
        `INSERT INTO held (shop, visitor, at, xml) VALUES ($1, $2, $3, $4)`, [shop, visitor, st.at, st.xml]),
      takeHeld: async (visitor) => (await q.query(
        `WITH taken AS (DELETE FROM held WHERE shop = $1 AND visitor = $2 RETURNING seq, at, xml)
         SELECT at, xml FROM taken ORDER BY seq`, [shop, visitor])).map(toStanza),

      lastAssigned: async () => new Map(
        (await q.query(`SELECT agent, at FROM assigned WHERE shop = $1 ORDER BY seq`, [shop])).map((r) => [r.agent, r.at])),
      markAssigned: async (agent, at) => void await q.query(
        `INSERT INTO assigned (shop, agent, at) VALUES ($1, $2, $3) ON CONFLICT (shop, agent) DO UPDATE SET at = $3`,
        [shop, agent, at]),

      stickyAgent: async (visitor, now) => (await q.query(
        `SELECT agent FROM sticky WHERE shop = $1 AND visitor = $2 AND until_at > $3`, [shop, visitor, now]))[0]?.agent,
      setSticky: async (visitor, agent, until) => void await q.query(
        `INSERT INTO sticky (shop, visitor, agent, until_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (shop, visitor) DO UPDATE SET agent = $3, until_at = $4`, [shop, visitor, agent, until]),

      appendHistory: async (visitor, st, keep) => {
        await q.query(`INSERT INTO history (shop, visitor, at, xml) VALUES ($1, $2, $3, $4)`, [shop, visitor, st.at, st.xml]);
        // Like MemoryStore's list.slice(-keep): keep > 0 keeps the newest keep, 0 keeps all, -n drops the oldest n.
        const n = Math.trunc(keep);
        if (n > 0) {
          await q.query(`DELETE FROM history WHERE shop = $1 AND visitor = $2 AND seq NOT IN
            (SELECT seq FROM history WHERE shop = $1 AND visitor = $2 ORDER BY seq DESC LIMIT $3)`, [shop, visitor, n]);
        } else if (n < 0) {
          await q.query(`DELETE FROM history WHERE seq IN
            (SELECT seq FROM history WHERE shop = $1 AND visitor = $2 ORDER BY seq LIMIT $3)`, [shop, visitor, -n]);
        }
      },
      history: async (visitor) => (await q.query(
        `SELECT at, xml FROM history WHERE shop = $1 AND visitor = $2 ORDER BY seq`, [shop, visitor])).map(toStanza),
      clearHistory: async (visitor) => void await q.query(`DELETE FROM history WHERE shop = $1 AND visitor = $2`, [shop, visitor]),
    };
  }

  async listShops() {
    return (await this.db.query(`SELECT * FROM shops ORDER BY seq`)).map(toShop);
  }
  async getShop(jid: string) {
    const [r] = await this.db.query(`SELECT * FROM shops WHERE jid = $1`, [jid]);
    return r && toShop(r);
  }
  async putShop(s: Shop) {
    await this.db.query(
      `INSERT INTO shops (jid, name, welcome, no_agent_text, strategy, queue_enabled) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (jid) DO UPDATE SET name = $2, welcome = $3, no_agent_text = $4, strategy = $5, queue_enabled = $6`,
      [s.jid, s.name, s.welcome, s.noAgentText, s.strategy, s.queueEnabled]);
  }
  async deleteShop(jid: string) {
    await this.db.transaction(async (q) => {
      await q.query(`DELETE FROM shops WHERE jid = $1`, [jid]);
      await q.query(`DELETE FROM memberships WHERE shop = $1`, [jid]);
    });
  }

  async memberships() {
    return (await this.db.query(`SELECT shop, agent, max_sessions, joined_at FROM memberships ORDER BY seq`))
      .map((r): Membership => ({ shop: r.shop, agent: r.agent, maxSessions: r.max_sessions, joinedAt: r.joined_at }));
  }
  async putMembership(m: Membership) {
    await this.db.query(
      `INSERT INTO memberships (shop, agent, max_sessions, joined_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (shop, agent) DO UPDATE SET max_sessions = $3, joined_at = $4`, [m.shop, m.agent, m.maxSessions, m.joinedAt]);
  }
  async deleteMembership(shop: string, agent: string) {
    await this.db.query(`DELETE FROM memberships WHERE shop = $1 AND agent = $2`, [shop, agent]);
  }

  async getAgent(jid: string) {
    const [r] = await this.db.query(`SELECT jid, status FROM agents WHERE jid = $1`, [jid]);
    return r && ({ jid: r.jid, status: r.status } as Agent);
  }
  async putAgent(a: Agent) {
    await this.db.query(`INSERT INTO agents (jid, status) VALUES ($1, $2) ON CONFLICT (jid) DO UPDATE SET status = $2`,
      [a.jid, a.status]);
  }

  async setResource(r: AgentResource) {
    await this.db.query(
      `INSERT INTO resources (agent, resource, node, show, priority) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (agent, resource) DO UPDATE SET node = $3, show = $4, priority = $5`,
      [r.agent, r.resource, r.node, r.show, r.priority]);
  }
  async removeResource(agent: string, resource: string) {
    await this.db.query(`DELETE FROM resources WHERE agent = $1 AND resource = $2`, [agent, resource]);
  }
  async clearNode(node: string) {
    await this.db.query(`DELETE FROM resources WHERE node = $1`, [node]);
  }
  async resources() {
    return (await this.db.query(`SELECT agent, resource, node, show, priority FROM resources ORDER BY seq`))
      .map((r): AgentResource => ({ agent: r.agent, resource: r.resource, node: r.node, show: r.show, priority: r.priority }));
  }

  async allSessions() {
    return (await this.db.query(`SELECT ${SESSION_COLS} FROM sessions ORDER BY seq`)).map(toSession);
  }

  async close() {
    await this.db.close();
  }
}

/**
 * `memory:` (MemoryStore), `pglite:memory` (embedded, not persisted), `pglite:<dir>` (embedded, persisted in dir),
 * or `postgres://…` / `postgresql://…` (a PostgreSQL server, via a pg Pool).
 */
export async function openStore(url: string): Promise<Store> {
  if (url === 'memory:') return new MemoryStore();
  if (url === 'pglite:memory') return SqlStore.open(await pgliteDriver());
  if (url.startsWith('pglite:')) return SqlStore.open(await pgliteDriver(url.slice('pglite:'.length)));
  if (/^postgres(ql)?:\/\//.test(url)) return SqlStore.open(await pgDriver(url));
  throw new Error(`unknown store url ${JSON.stringify(url)}: use memory:, pglite:memory, pglite:<dir> or postgres://…`);
}
