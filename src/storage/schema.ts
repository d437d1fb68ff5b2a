// The SQL schema, as numbered versions: a database records the version it is at (schema_version) and
// migrate() brings it to SCHEMA_VERSION in one transaction, running each later version's steps in order.
// Steps are idempotent (IF NOT EXISTS). The steps of the database's own version run again too: before versions
// were kept strictly, steps were added to a version after it was released.
// A new table or column is a new version at the end of VERSIONS, and SCHEMA_VERSION follows.
// Timestamps are double precision: ms fit exactly and both drivers return JS numbers (int8 would be strings in pg).
import { ShopState, type SnapshotBody } from '../routing/state.js';
import { DEFAULT_LIMITS } from '../domain/shop.js';
import type { Queryable, Row } from './driver.js';

interface Version {
  version: number;
  what: string;
  sql: string[];
  /** Data to carry over from the version before, after `sql`. */
  convert?: (q: Queryable) => Promise<void>;
}

const VERSIONS: Version[] = [
  {
    version: 1,
    what: 'shops, memberships, agents and presence',
    sql: [
      `CREATE TABLE IF NOT EXISTS shops (jid text PRIMARY KEY, name text NOT NULL, welcome text NOT NULL,
         no_agent_text text NOT NULL, strategy text NOT NULL, queue_enabled boolean NOT NULL, seq bigserial)`,
      `CREATE TABLE IF NOT EXISTS memberships (shop text, agent text, max_sessions int NOT NULL,
         joined_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, agent))`,
      `CREATE TABLE IF NOT EXISTS agents (jid text PRIMARY KEY, status text NOT NULL, seq bigserial)`,
      `CREATE TABLE IF NOT EXISTS resources (agent text, resource text, node text NOT NULL, show text NOT NULL,
         priority int NOT NULL, seq bigserial, PRIMARY KEY (agent, resource))`,
    ],
  },
  {
    version: 2,
    what: 'shop state as a journal and snapshots; per-shop limits and texts; shop leases',
    sql: [
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS limits text NOT NULL DEFAULT '{}'`,
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT 'zh'`,
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS texts text NOT NULL DEFAULT '{}'`,
      `ALTER TABLE agents ADD COLUMN IF NOT EXISTS seq bigserial`,
      // One row per shop per group commit (a JSON array of changes), and a snapshot per shop that supersedes its
      // rows up to `upto`.
      `CREATE TABLE IF NOT EXISTS journal (seq bigserial PRIMARY KEY, shop text NOT NULL, body text NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS journal_shop ON journal (shop, seq)`,
      `CREATE TABLE IF NOT EXISTS snapshot_parts (shop text, part int, upto bigint NOT NULL, body text NOT NULL,
         PRIMARY KEY (shop, part))`,
      // Which sidecar decides (and writes the journal of) each shop; rows expire unless renewed
      // (src/storage/sql-leases.ts). The database-wide sidecar_lease of earlier versions is no longer read.
      `CREATE TABLE IF NOT EXISTS shop_lease (shop text PRIMARY KEY, holder text NOT NULL, sidecar text NOT NULL,
         expires_at double precision NOT NULL)`,
    ],
    convert: async (q) => {
      if ((await q.query(`SELECT to_regclass('sessions') AS t`))[0].t !== null) await stateTablesToSnapshots(q);
    },
  },
  {
    version: 3,
    what: 'groups and bot settings of a shop, archived sessions, live sidecars',
    sql: [
      // A shop's groups and bot are JSON columns of its row.
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS groups text NOT NULL DEFAULT '[]'`,
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS bot text NOT NULL DEFAULT '{}'`,
      // Closed sessions with their transcript (src/storage/sql-archive.ts); `agents` lists every agent of the
      // session, for search by agent.
      `CREATE TABLE IF NOT EXISTS archive (id text PRIMARY KEY, shop text NOT NULL, visitor text NOT NULL, agent text NOT NULL,
         agents text[] NOT NULL, grp text NOT NULL, started_at double precision NOT NULL, ended_at double precision NOT NULL,
         queue_wait_ms double precision NOT NULL, first_response_ms double precision, close_reason text NOT NULL,
         rating int, rated_at double precision, body text NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS archive_shop_ended ON archive (shop, ended_at)`,
      `CREATE INDEX IF NOT EXISTS archive_visitor ON archive (visitor, ended_at)`,
      `CREATE INDEX IF NOT EXISTS archive_ended ON archive (ended_at)`,
      // Which sidecars are alive (heartbeats), to spread the shops over.
      `CREATE TABLE IF NOT EXISTS sidecars (holder text PRIMARY KEY, sidecar text NOT NULL, expires_at double precision NOT NULL)`,
    ],
  },
];

export const SCHEMA_VERSION = VERSIONS[VERSIONS.length - 1].version;

/** Brings the database to SCHEMA_VERSION; refuses one written by a newer sidecar. Runs inside the caller's transaction. */
export async function migrate(q: Queryable): Promise<{ from: number; to: number }> {
  // Two sidecars starting together would race on CREATE TABLE IF NOT EXISTS: serialise them.
  await q.query(`SELECT pg_advisory_xact_lock(hashtext('consult-router schema'))`);
  await q.query(`CREATE TABLE IF NOT EXISTS schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)`);
  const [found] = await q.query(`SELECT version FROM schema_version`);
  const from: number = found?.version ?? 0;
  if (from > SCHEMA_VERSION) throw new Error(`database schema version ${from} is newer than this sidecar's ${SCHEMA_VERSION}`);
  for (const v of VERSIONS) {
    if (v.version < from) continue;
    for (const sql of v.sql) await q.query(sql);
    if (from > 0 && v.version > from) await v.convert?.(q); // a new database has nothing to carry over
  }
  await q.query(`INSERT INTO schema_version (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = $1`, [SCHEMA_VERSION]);
  return { from, to: SCHEMA_VERSION };
}

/** Version 1 kept shop state in tables, changed row by row: turn it into one snapshot per shop. */
async function stateTablesToSnapshots(q: Queryable): Promise<void> {
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
