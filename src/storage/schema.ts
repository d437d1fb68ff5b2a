// The SQL schema, as numbered versions: a database records the version it is at (schema_version) and
// migrate() brings it to SCHEMA_VERSION in one transaction, running each later version's steps in order.
// Steps are idempotent (IF NOT EXISTS). The steps of the database's own version run again too: before versions
// were kept strictly, steps were added to a version after it was released.
// A new table or column is a new version at the end of VERSIONS, and SCHEMA_VERSION follows.
// Timestamps are double precision: ms fit exactly and both drivers return JS numbers (int8 would be strings in pg).
// Every table is in the schema `consult` (the drivers put it first in the search path, so the SQL names tables
// without it); databases of versions 1–3 had them in `public` and migrate() moves them (ours only) first.
import { ShopState, type SnapshotBody } from '../routing/state.js';
import { DEFAULT_LIMITS } from '../domain/shop.js';
import { SCHEMA, type Queryable, type Row } from './driver.js';

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
  {
    // No statement of its own: migrate() moves the tables of earlier versions out of `public` before it reads the
    // version (schema_version moves too). Our `archive` and ejabberd's MAM `archive` can then share a database.
    version: 4,
    what: `every table in the schema ${SCHEMA}, away from the tables of other programs (ejabberd's)`,
    sql: [],
  },
  {
    version: 5,
    what: 'lease epochs (fencing tokens for the shims) and whether a sidecar can be reached',
    sql: [
      // Grows each time a shop's lease changes holder: the shims send a shop to the claim with the higher epoch.
      `ALTER TABLE shop_lease ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0`,
      // A sidecar that started but is not reachable by the shims yet is alive, not a candidate owner.
      `ALTER TABLE sidecars ADD COLUMN IF NOT EXISTS ready boolean NOT NULL DEFAULT true`,
    ],
  },
  {
    version: 6,
    what: 'opening hours and the maximum queue wait of a shop',
    sql: [
      // JSON of the shop's OpeningHours ('' = always open); groups carry their own in the groups column.
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS hours text NOT NULL DEFAULT ''`,
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS queue_max_wait_sec int NOT NULL DEFAULT 0`,
    ],
  },
  {
    version: 7,
    what: 'answer or move on: the answer timeout and the missed chats that set an agent away, of a shop',
    sql: [
      // NULL: the shop does not set it (off); groups carry their own answerTimeoutSec in the groups column.
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS answer_timeout_sec int`,
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS max_missed_chats int`,
    ],
  },
  {
    version: 8,
    what: 'the supervisors of a shop',
    sql: [`ALTER TABLE shops ADD COLUMN IF NOT EXISTS supervisors text NOT NULL DEFAULT '[]'`],
  },
  {
    version: 9,
    what: "a shop's canned replies, and the tags of archived sessions",
    sql: [
      // JSON of the shop's canned replies by name; groups carry their own in the groups column.
      `ALTER TABLE shops ADD COLUMN IF NOT EXISTS canned text NOT NULL DEFAULT '{}'`,
      `ALTER TABLE archive ADD COLUMN IF NOT EXISTS tags text[] NOT NULL DEFAULT '{}'`,
      // GET /archive?tag= and /stats?tag= ask tags @> ARRAY[tag].
      `CREATE INDEX IF NOT EXISTS archive_tags ON archive USING gin (tags)`,
    ],
  },
  {
    version: 10,
    what: 'the audit log of admin actions',
    sql: [
      // One row per admin request that changes something (or exports a visitor): begun before the change, its status
      // and the JSON body (target, before, after) set once answered (src/storage/sql-audit.ts). `targets`: the JIDs
      // and group it names, for GET /audit?target=.
      `CREATE TABLE IF NOT EXISTS audit (id bigserial PRIMARY KEY, at double precision NOT NULL, token text NOT NULL,
         role text NOT NULL, method text NOT NULL, path text NOT NULL, route text NOT NULL, targets text[] NOT NULL,
         status int, body text NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS audit_at ON audit (at)`,
    ],
  },
  {
    version: 11,
    what: 'the visitor context of archived sessions, for search',
    // Lower-cased "name value" lines of the record's context (src/domain/context.ts contextSearchText): GET
    // /archive?context= matches a substring of it. The context itself is in the body with the rest of the record.
    sql: [`ALTER TABLE archive ADD COLUMN IF NOT EXISTS context text NOT NULL DEFAULT ''`],
  },
  {
    version: 12,
    what: "a shop's own webhook, set through the admin API",
    // JSON of {url, secret, messages?, timeoutMs?}, 'false' (no events for it), or '' (the config's).
    sql: [`ALTER TABLE shops ADD COLUMN IF NOT EXISTS events text NOT NULL DEFAULT ''`],
  },
];

/**
 * Our tables, in every version, with the columns each was created with (later versions only add columns): a table
 * of that name without them belongs to someone else.
 */
const OURS: Record<string, string[]> = {
  schema_version: ['id', 'version'],
  shops: ['jid', 'name', 'welcome', 'no_agent_text', 'strategy', 'queue_enabled', 'seq'],
  memberships: ['shop', 'agent', 'max_sessions', 'joined_at', 'seq'],
  agents: ['jid', 'status'],
  resources: ['agent', 'resource', 'node', 'show', 'priority', 'seq'],
  journal: ['seq', 'shop', 'body'],
  snapshot_parts: ['shop', 'part', 'upto', 'body'],
  shop_lease: ['shop', 'holder', 'sidecar', 'expires_at'],
  archive: ['id', 'shop', 'visitor', 'agent', 'agents', 'grp', 'started_at', 'ended_at', 'close_reason', 'body'],
  sidecars: ['holder', 'sidecar', 'expires_at'],
  audit: ['id', 'at', 'token', 'role', 'method', 'path', 'route', 'targets', 'status', 'body'],
};
/** Tables of earlier versions or unreleased builds that a database may still hold: moved along, never created. */
const OLD_TABLES: Record<string, string[]> = {
  sidecar_lease: ['id', 'holder', 'expires_at'],
  snapshots: ['shop', 'upto', 'body'],
  sessions: ['shop', 'visitor', 'agent', 'started_at', 'last_visitor_at'],
  queue: ['shop', 'visitor', 'enqueued_at'],
  held: ['seq', 'shop', 'visitor', 'at', 'xml'],
  history: ['seq', 'shop', 'visitor', 'at', 'xml'],
  assigned: ['shop', 'agent', 'at'],
  sticky: ['shop', 'visitor', 'agent', 'until_at'],
  shop_version: ['shop', 'version'],
};

export const SCHEMA_VERSION = VERSIONS[VERSIONS.length - 1].version;

/** Brings the database to SCHEMA_VERSION; refuses one written by a newer sidecar. Runs inside the caller's transaction. */
export async function migrate(q: Queryable): Promise<{ from: number; to: number }> {
  // Two sidecars starting together would race on CREATE TABLE IF NOT EXISTS: serialise them.
  await q.query(`SELECT pg_advisory_xact_lock(hashtext('consult-router schema'))`);
  await q.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
  const [{ current }] = await q.query(`SELECT current_schema() AS current`);
  if (current !== SCHEMA)
    throw new Error(`the database connection does not put the schema ${SCHEMA} first in its search_path (current schema: ${current})`);
  await moveFromPublic(q);
  await checkTables(q);
  await step(
    q,
    0,
    'the version table',
    `CREATE TABLE IF NOT EXISTS schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)`,
  );
  const [found] = await q.query(`SELECT version FROM schema_version`);
  const from: number = found?.version ?? 0;
  if (from > SCHEMA_VERSION) throw new Error(`database schema version ${from} is newer than this sidecar's ${SCHEMA_VERSION}`);
  for (const v of VERSIONS) {
    if (v.version < from) continue;
    for (const sql of v.sql) await step(q, v.version, v.what, sql);
    if (from > 0 && v.version > from) await v.convert?.(q); // a new database has nothing to carry over
  }
  await q.query(`INSERT INTO schema_version (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = $1`, [SCHEMA_VERSION]);
  return { from, to: SCHEMA_VERSION };
}

/** One statement of a version; its failure names the version and the statement (and so the table). */
async function step(q: Queryable, version: number, what: string, sql: string): Promise<void> {
  try {
    await q.query(sql);
  } catch (e) {
    const statement = sql.replace(/\s+/g, ' ').slice(0, 120);
    throw new Error(`schema version ${version} (${what}) failed at "${statement}": ${(e as Error).message}`, { cause: e });
  }
}

/** The columns of each table of a schema that has one of these names. */
async function columnsIn(q: Queryable, schema: string, names: string[]): Promise<Map<string, Set<string>>> {
  const rows = await q.query(
    `SELECT table_name AS t, column_name AS c FROM information_schema.columns WHERE table_schema = $1 AND table_name = ANY($2::text[])`,
    [schema, names],
  );
  const out = new Map<string, Set<string>>();
  for (const r of rows) out.set(r.t, (out.get(r.t) ?? new Set()).add(r.c));
  return out;
}

const lacking = (have: Set<string>, want: string[]) => want.filter((c) => !have.has(c));

/**
 * A database of versions 1–3 has our tables in `public`: they move to SCHEMA with their data, indexes and sequences,
 * in this transaction. Only ours: a table of one of our names without our columns (ejabberd's `archive`) stays.
 */
async function moveFromPublic(q: Queryable): Promise<void> {
  const [{ here, there }] = await q.query(
    `SELECT to_regclass($1) IS NOT NULL AS here, to_regclass('public.schema_version') IS NOT NULL AS there`,
    [`${SCHEMA}.schema_version`],
  );
  if (here || !there) return; // already moved, or a new database
  const all = { ...OURS, ...OLD_TABLES };
  const inPublic = await columnsIn(q, 'public', Object.keys(all));
  if (lacking(inPublic.get('schema_version') ?? new Set(), OURS.schema_version).length > 0) return; // not ours
  const inOurs = await columnsIn(q, SCHEMA, Object.keys(all));
  for (const [table, cols] of inPublic) {
    if (lacking(cols, all[table]).length > 0) continue; // another program's table of the same name
    if (inOurs.has(table))
      throw new Error(
        `cannot move table public.${table} of an earlier consult-router into the schema ${SCHEMA}: ${SCHEMA}.${table} exists already; ` +
          'keep the one you need and drop or rename the other',
      );
    await q.query(`ALTER TABLE public.${table} SET SCHEMA ${SCHEMA}`);
  }
}

/** A table of ours in SCHEMA that is not ours stops the start, named with what it lacks. */
async function checkTables(q: Queryable): Promise<void> {
  for (const [table, cols] of await columnsIn(q, SCHEMA, Object.keys(OURS))) {
    const missing = lacking(cols, OURS[table]);
    if (missing.length === 0) continue;
    throw new Error(
      `table ${SCHEMA}.${table} is not consult-router's: it lacks the columns ${missing.join(', ')} (it has ${[...cols].join(', ')}). ` +
        `Another program created it in the schema ${SCHEMA} (ejabberd does when its database user is called ${SCHEMA}: "$user" comes ` +
        'first in its search_path); move it away, or give consult-router a database of its own',
    );
  }
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
