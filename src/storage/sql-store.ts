// SQL stores: one schema and one set of queries for PGlite (embedded, the default) and PostgreSQL (pg).
// SqlStore (shops, agents, presence) behaves exactly like MemoryStore; `seq` columns keep its insertion
// order (an upsert keeps its row's place). The journal of shop state is in src/journal/sql-journal.ts.
import { AsyncLocalStorage } from 'node:async_hooks';
import { SqlArchive } from './sql-archive.js';
import { MemoryArchive } from './memory-archive.js';
import { type ArchiveStore } from '../desk/stores.js';
import { mkdirSync } from 'node:fs';
import { MemoryJournal } from './memory-journal.js';
import type { JournalStore } from '../desk/journal.js';
import { SqlJournal } from './sql-journal.js';
import { SoleOwner, SqlShopLeases, type ShopLeases } from '../cluster/leases.js';
import { MemoryStore } from './memory-store.js';
import { ShopState, type SnapshotBody } from '../routing/state.js';
import { DEFAULT_BOT, DEFAULT_LIMITS, type Agent, type AgentResource, type Membership, type Shop } from '../domain/shop.js';
import { type Store } from '../desk/stores.js';

type Row = Record<string, any>;
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

// ---- groups, bot, archive (issue 13) ----
// A shop's groups and bot are JSON columns of its row; closed sessions are archived with their transcript
// (src/archive/sql-archive.ts). `agents` lists every agent of the session, for search by agent.
const SCHEMA_ISSUE13 = [
  `ALTER TABLE shops ADD COLUMN IF NOT EXISTS groups text NOT NULL DEFAULT '[]'`,
  `ALTER TABLE shops ADD COLUMN IF NOT EXISTS bot text NOT NULL DEFAULT '{}'`,
  `CREATE TABLE IF NOT EXISTS archive (id text PRIMARY KEY, shop text NOT NULL, visitor text NOT NULL, agent text NOT NULL,
     agents text[] NOT NULL, grp text NOT NULL, started_at double precision NOT NULL, ended_at double precision NOT NULL,
     queue_wait_ms double precision NOT NULL, first_response_ms double precision, close_reason text NOT NULL,
     rating int, rated_at double precision, body text NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS archive_shop_ended ON archive (shop, ended_at)`,
  `CREATE INDEX IF NOT EXISTS archive_visitor ON archive (visitor, ended_at)`,
  `CREATE INDEX IF NOT EXISTS archive_ended ON archive (ended_at)`,
];
// ---- end issue 13 ----

export const SCHEMA_VERSION = 2;
// Timestamps are double precision: ms fit exactly and both drivers return JS numbers (int8 would be strings in pg).
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS shops (jid text PRIMARY KEY, name text NOT NULL, welcome text NOT NULL,
     no_agent_text text NOT NULL, strategy text NOT NULL, queue_enabled boolean NOT NULL, seq bigserial)`,
  `ALTER TABLE shops ADD COLUMN IF NOT EXISTS limits text NOT NULL DEFAULT '{}'`,
  `ALTER TABLE shops ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT 'zh'`,
  `ALTER TABLE shops ADD COLUMN IF NOT EXISTS texts text NOT NULL DEFAULT '{}'`,
  `CREATE TABLE IF NOT EXISTS memberships (shop text, agent text, max_sessions int NOT NULL,
     joined_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, agent))`,
  `CREATE TABLE IF NOT EXISTS agents (jid text PRIMARY KEY, status text NOT NULL, seq bigserial)`,
  `ALTER TABLE agents ADD COLUMN IF NOT EXISTS seq bigserial`,
  `CREATE TABLE IF NOT EXISTS resources (agent text, resource text, node text NOT NULL, show text NOT NULL,
     priority int NOT NULL, seq bigserial, PRIMARY KEY (agent, resource))`,
  // The journal of shop state: one row per shop per group commit (a JSON array of changes), and a snapshot per
  // shop that supersedes its rows up to `upto`.
  `CREATE TABLE IF NOT EXISTS journal (seq bigserial PRIMARY KEY, shop text NOT NULL, body text NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS journal_shop ON journal (shop, seq)`,
  `CREATE TABLE IF NOT EXISTS snapshot_parts (shop text, part int, upto bigint NOT NULL, body text NOT NULL,
     PRIMARY KEY (shop, part))`,
  // Which sidecar decides (and writes the journal of) each shop, and which sidecars are alive; rows expire unless
  // renewed (src/journal/lease.ts). The database-wide sidecar_lease of earlier versions is no longer read.
  `CREATE TABLE IF NOT EXISTS shop_lease (shop text PRIMARY KEY, holder text NOT NULL, sidecar text NOT NULL,
     expires_at double precision NOT NULL)`,
  ...SCHEMA_ISSUE13,
  `CREATE TABLE IF NOT EXISTS sidecars (holder text PRIMARY KEY, sidecar text NOT NULL, expires_at double precision NOT NULL)`,
];

const toShop = (r: Row): Shop => ({
  jid: r.jid,
  name: r.name,
  welcome: r.welcome,
  noAgentText: r.no_agent_text,
  strategy: r.strategy,
  queueEnabled: r.queue_enabled,
  limits: { ...DEFAULT_LIMITS, ...JSON.parse(r.limits || '{}') },
  language: r.language,
  texts: JSON.parse(r.texts || '{}'),
  groups: JSON.parse(r.groups || '[]'),
  bot: { ...DEFAULT_BOT, ...JSON.parse(r.bot || '{}') },
});

/** Version 1 kept shop state in tables, changed row by row: turn it into one snapshot per shop. */
async function migrateV1(q: Queryable): Promise<void> {
  const rows = (sql: string) => q.query(sql);
  const sessions = await rows(`SELECT * FROM sessions ORDER BY seq`);
  const queue = await rows(`SELECT * FROM queue ORDER BY seq`);
  const held = await rows(`SELECT * FROM held ORDER BY seq`);
  const history = await rows(`SELECT * FROM history ORDER BY seq`);
  const assigned = await rows(`SELECT * FROM assigned ORDER BY seq`);
  const sticky = await rows(`SELECT * FROM sticky ORDER BY until_at`);
  const shops = new Set([...sessions, ...queue, ...held, ...history, ...assigned, ...sticky].map((r) => r.shop as string));
  const grouped = (list: Row[], shop: string) => {
    const m = new Map<string, { at: number; xml: string }[]>();
    for (const r of list.filter((x) => x.shop === shop)) m.set(r.visitor, [...(m.get(r.visitor) ?? []), { at: r.at, xml: r.xml }]);
    return [...m];
  };
  for (const shop of shops) {
    const body: SnapshotBody = {
      sessions: sessions
        .filter((r) => r.shop === shop)
        .map((r) => ({
          visitor: r.visitor,
          shop,
          agent: r.agent,
          startedAt: r.started_at,
          lastVisitorAt: r.last_visitor_at,
          lastAgentAt: r.last_agent_at,
          remindedAt: r.reminded_at,
          orphanedAt: r.orphaned_at,
        })),
      queue: queue.filter((r) => r.shop === shop).map((r) => [r.visitor, r.enqueued_at]),
      kept: grouped(held, shop),
      history: grouped(history, shop),
      lastAssigned: assigned.filter((r) => r.shop === shop).map((r) => [r.agent, r.at]),
      sticky: sticky.filter((r) => r.shop === shop).map((r) => [r.visitor, r.agent, r.until_at]),
    };
    const parts = ShopState.fromJSON(shop, DEFAULT_LIMITS, body).snapshotParts();
    for (const [i, part] of parts.entries()) {
      await q.query(`INSERT INTO snapshot_parts (shop, part, upto, body) VALUES ($1, $2, 0, $3)`, [shop, i, part]);
    }
  }
  for (const t of ['sessions', 'queue', 'held', 'history', 'assigned', 'sticky', 'shop_version']) await q.query(`DROP TABLE ${t}`);
}

export class SqlStore implements Store {
  private constructor(readonly db: Driver) {}

  static async open(db: Driver): Promise<SqlStore> {
    await db
      .transaction(async (q) => {
        // Two sidecars starting together would race on CREATE TABLE IF NOT EXISTS: serialise them.
        await q.query(`SELECT pg_advisory_xact_lock(hashtext('consult-router schema'))`);
        await q.query(SCHEMA[0]);
        const [found] = await q.query(`SELECT version FROM schema_version`);
        if (found && found.version > SCHEMA_VERSION) {
          throw new Error(`database schema version ${found.version} is newer than this sidecar's ${SCHEMA_VERSION}`);
        }
        for (const sql of SCHEMA.slice(1)) await q.query(sql);
        if (found?.version === 1) await migrateV1(q);
        await q.query(`INSERT INTO schema_version (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = $1`, [
          SCHEMA_VERSION,
        ]);
      })
      .catch(async (err) => {
        await db.close().catch(() => undefined);
        throw err;
      });
    return new SqlStore(db);
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
      `INSERT INTO shops (jid, name, welcome, no_agent_text, strategy, queue_enabled, limits, language, texts, groups, bot)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT (jid) DO UPDATE SET name = $2, welcome = $3, no_agent_text = $4, strategy = $5, queue_enabled = $6,
         limits = $7, language = $8, texts = $9, groups = $10, bot = $11`,
      [
        s.jid,
        s.name,
        s.welcome,
        s.noAgentText,
        s.strategy,
        s.queueEnabled,
        JSON.stringify(s.limits),
        s.language,
        JSON.stringify(s.texts),
        JSON.stringify(s.groups ?? []),
        JSON.stringify(s.bot ?? DEFAULT_BOT),
      ],
    );
  }
  async deleteShop(jid: string) {
    await this.db.transaction(async (q) => {
      await q.query(`DELETE FROM shops WHERE jid = $1`, [jid]);
      await q.query(`DELETE FROM memberships WHERE shop = $1`, [jid]);
    });
  }

  async memberships() {
    return (await this.db.query(`SELECT shop, agent, max_sessions, joined_at FROM memberships ORDER BY seq`)).map(
      (r): Membership => ({ shop: r.shop, agent: r.agent, maxSessions: r.max_sessions, joinedAt: r.joined_at }),
    );
  }
  async putMembership(m: Membership) {
    await this.db.query(
      `INSERT INTO memberships (shop, agent, max_sessions, joined_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (shop, agent) DO UPDATE SET max_sessions = $3, joined_at = $4`,
      [m.shop, m.agent, m.maxSessions, m.joinedAt],
    );
  }
  async deleteMembership(shop: string, agent: string) {
    await this.db.query(`DELETE FROM memberships WHERE shop = $1 AND agent = $2`, [shop, agent]);
  }

  async getAgent(jid: string) {
    const [r] = await this.db.query(`SELECT jid, status FROM agents WHERE jid = $1`, [jid]);
    return r && ({ jid: r.jid, status: r.status } as Agent);
  }
  async listAgents() {
    return (await this.db.query(`SELECT jid, status FROM agents ORDER BY seq`)).map((r) => ({ jid: r.jid, status: r.status }) as Agent);
  }
  async putAgent(a: Agent) {
    await this.db.query(`INSERT INTO agents (jid, status) VALUES ($1, $2) ON CONFLICT (jid) DO UPDATE SET status = $2`, [a.jid, a.status]);
  }

  async setResource(r: AgentResource) {
    await this.db.query(
      `INSERT INTO resources (agent, resource, node, show, priority) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (agent, resource) DO UPDATE SET node = $3, show = $4, priority = $5`,
      [r.agent, r.resource, r.node, r.show, r.priority],
    );
  }
  async removeResource(agent: string, resource: string) {
    await this.db.query(`DELETE FROM resources WHERE agent = $1 AND resource = $2`, [agent, resource]);
  }
  async clearNode(node: string) {
    await this.db.query(`DELETE FROM resources WHERE node = $1`, [node]);
  }
  async resources() {
    return (await this.db.query(`SELECT agent, resource, node, show, priority FROM resources ORDER BY seq`)).map(
      (r): AgentResource => ({ agent: r.agent, resource: r.resource, node: r.node, show: r.show, priority: r.priority }),
    );
  }

  async close() {
    await this.db.close();
  }
}

export interface Stores {
  store: Store;
  journal: JournalStore;
  archive: ArchiveStore; // closed sessions (issue 13)
  /** Which shops this sidecar decides: all of them (memory, PGlite), or those whose lease it holds (PostgreSQL). */
  leases: ShopLeases;
}

/** Who this sidecar is: `holder` is this process (fences writes), `sidecar` its stable id (spreads shops). */
export interface Identity {
  holder: string;
  sidecar: string;
}

/**
 * `memory:` (all in this process), `pglite:memory` (embedded, not persisted), `pglite:<dir>` (embedded, persisted
 * in dir), or `postgres://…` / `postgresql://…` (a PostgreSQL server, via a pg Pool, shared by several sidecars).
 */
export async function openStores(url: string, me: Identity, leaseTtlMs?: number): Promise<Stores> {
  if (url === 'memory:')
    return {
      store: new MemoryStore(),
      journal: new MemoryJournal(),
      leases: new SoleOwner(me.holder, me.sidecar),
      archive: new MemoryArchive(),
    };
  if (url === 'pglite:memory') return storesOn(await pgliteDriver(), me, { shared: false });
  if (url.startsWith('pglite:')) return storesOn(await pgliteDriver(url.slice('pglite:'.length)), me, { shared: false });
  if (/^postgres(ql)?:\/\//.test(url)) return storesOn(await pgDriver(url), me, { shared: true, leaseTtlMs });
  throw new Error(`unknown store url ${JSON.stringify(url)}: use memory:, pglite:memory, pglite:<dir> or postgres://…`);
}

/**
 * The stores on an open database connection (tests share one between cases). `shared`: several sidecars may use
 * the database (PostgreSQL), so shops are leased and writes fenced; PGlite is embedded in one process, which owns all.
 */
export async function storesOn(db: Driver, me: Identity, opts: { shared: boolean; leaseTtlMs?: number }): Promise<Stores> {
  const store = await SqlStore.open(db);
  const archive = new SqlArchive(db);
  if (!opts.shared) return { store, journal: new SqlJournal(db), leases: new SoleOwner(me.holder, me.sidecar), archive };
  return { store, journal: new SqlJournal(db, me.holder), leases: new SqlShopLeases(db, me.holder, me.sidecar, opts.leaseTtlMs), archive };
}
