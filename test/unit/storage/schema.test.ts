// Our tables in a schema of their own (consult), so that they share a PostgreSQL database with ejabberd's: its MAM
// table is also called `archive`. ejabberd's own pg.sql / pg.new.sql (Debian's package) loaded before or after our
// stores open; either way both archives work, and ejabberd's keeps its columns and takes a MAM insert. An old
// database with our tables in `public` (next to ejabberd's) is moved, data kept; a table in `consult` that is not
// ours stops the start with its name and what it lacks.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pg from 'pg';
import type { ArchiveRecord } from '../../../src/domain/archive.js';
import { DEFAULT_BOT, DEFAULT_LIMITS } from '../../../src/domain/shop.js';
import { openStores, type Stores } from '../../../src/storage/open.js';
import { SCHEMA_VERSION } from '../../../src/storage/schema.js';
import { startPostgres, type Postgres } from '../../support/postgres.js';
import { setUpSuite } from '../../support/suite.js';

const EJABBERD_SQL = ['/usr/share/ejabberd/sql/pg.sql', '/usr/share/ejabberd/sql/pg.new.sql'];
const MAM_COLUMNS = ['username', 'timestamp', 'peer', 'bare_peer', 'xml', 'txt', 'id', 'kind', 'nick', 'created_at'];
const me = { holder: 'schema#1', sidecar: 'schema' };

const schema = suite<{ pg: Postgres; n: number }>('our tables in the schema consult, beside ejabberd');
setUpSuite(schema, async (ctx) => {
  ctx.pg = await startPostgres();
  ctx.n = 0;
});
schema.after(async (ctx) => {
  await ctx.pg?.stop();
});

/** A fresh database on the suite's server: its URL and a plain client (default search_path, as ejabberd connects). */
async function freshDb(ctx: { pg: Postgres; n: number }): Promise<{ url: string; client: pg.Client }> {
  const name = `db${++ctx.n}`;
  const admin = new pg.Client({ connectionString: ctx.pg.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = ctx.pg.url.replace(/\/test$/, `/${name}`);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return { url, client };
}

const record = (id: string): ArchiveRecord => ({
  id,
  shop: 'shop@x',
  visitor: 'v1@x',
  agent: 'ann@x',
  agents: ['ann@x'],
  group: '',
  startedAt: 1000,
  endedAt: 2000,
  queueWaitMs: 0,
  firstResponseMs: 10,
  closeReason: 'agent',
  transfers: [],
  lines: [{ at: 1000, role: 'visitor', who: 'v1@x', text: 'hi' }],
  omitted: 0,
  tags: [],
});

/** Ours work: a shop and an archive record written and read back. */
async function oursWork(stores: Stores, id: string): Promise<void> {
  await stores.store.putShop({
    jid: 'shop@x',
    name: 'S',
    welcome: 'hi',
    noAgentText: 'nobody',
    strategy: 'least-busy',
    queueEnabled: true,
    limits: DEFAULT_LIMITS,
    language: 'en',
    texts: {},
    groups: [],
    bot: DEFAULT_BOT,
  });
  await stores.archive.put([record(id)]);
  assert.equal(await stores.archive.get(id), record(id));
  assert.equal(
    (await stores.archive.search({ shop: 'shop@x' })).map((r) => r.id),
    [id],
  );
}

/** ejabberd's archive is still its own: its columns, and a message archived as mod_mam_sql does. */
async function ejabberdsWorks(client: pg.Client): Promise<void> {
  const cols = (
    await client.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'archive'`)
  ).rows.map((r) => r.column_name);
  for (const c of MAM_COLUMNS) assert.ok(cols.includes(c), `ejabberd's archive keeps its column ${c}`);
  assert.not.ok(cols.includes('shop'), 'and has none of ours');
  const newSchema = cols.includes('server_host');
  await client.query(
    newSchema
      ? `INSERT INTO archive (username, server_host, timestamp, peer, bare_peer, xml, txt, kind, nick) VALUES ('alice', 'x', 1700000000000000, 'bob@x/r', 'bob@x', '<message/>', 'hi', 'chat', '')`
      : `INSERT INTO archive (username, timestamp, peer, bare_peer, xml, txt, kind, nick) VALUES ('alice', 1700000000000000, 'bob@x/r', 'bob@x', '<message/>', 'hi', 'chat', '')`,
  );
  const { rows } = await client.query(`SELECT username, txt FROM archive WHERE username = 'alice'`);
  assert.equal(rows, [{ username: 'alice', txt: 'hi' }]);
}

for (const file of EJABBERD_SQL) {
  const name = file.split('/').pop();
  schema(`ejabberd's ${name} first, then our stores`, async (ctx) => {
    const { url, client } = await freshDb(ctx);
    try {
      await client.query(fs.readFileSync(file, 'utf8'));
      const stores = await openStores(url, me);
      try {
        await oursWork(stores, 'a1');
      } finally {
        await stores.store.close();
      }
      await ejabberdsWorks(client);
    } finally {
      await client.end();
    }
  });

  schema(`our stores first, then ejabberd's ${name}`, async (ctx) => {
    const { url, client } = await freshDb(ctx);
    try {
      const stores = await openStores(url, me);
      try {
        await oursWork(stores, 'b1');
        await client.query(fs.readFileSync(file, 'utf8'));
        await ejabberdsWorks(client);
        assert.equal((await stores.archive.get('b1'))?.id, 'b1', 'ours is untouched by it');
      } finally {
        await stores.store.close();
      }
      const again = await openStores(url, me); // and a restart beside it
      assert.equal((await again.archive.get('b1'))?.id, 'b1');
      await again.store.close();
    } finally {
      await client.end();
    }
  });
}

schema("an old database (version 2, our tables in public beside ejabberd's) is moved into consult, data kept", async (ctx) => {
  const { url, client } = await freshDb(ctx);
  try {
    await client.query(fs.readFileSync(EJABBERD_SQL[0], 'utf8'));
    // Version 2 as an earlier sidecar left it in public (version 3 failed here: ejabberd's archive has no column shop).
    await client.query(`
      CREATE TABLE schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL);
      INSERT INTO schema_version VALUES (1, 2);
      CREATE TABLE shops (jid text PRIMARY KEY, name text NOT NULL, welcome text NOT NULL, no_agent_text text NOT NULL,
        strategy text NOT NULL, queue_enabled boolean NOT NULL, seq bigserial, limits text NOT NULL DEFAULT '{}',
        language text NOT NULL DEFAULT 'zh', texts text NOT NULL DEFAULT '{}');
      CREATE TABLE memberships (shop text, agent text, max_sessions int NOT NULL, joined_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, agent));
      CREATE TABLE agents (jid text PRIMARY KEY, status text NOT NULL, seq bigserial);
      CREATE TABLE resources (agent text, resource text, node text NOT NULL, show text NOT NULL, priority int NOT NULL, seq bigserial, PRIMARY KEY (agent, resource));
      CREATE TABLE journal (seq bigserial PRIMARY KEY, shop text NOT NULL, body text NOT NULL);
      CREATE INDEX journal_shop ON journal (shop, seq);
      CREATE TABLE snapshot_parts (shop text, part int, upto bigint NOT NULL, body text NOT NULL, PRIMARY KEY (shop, part));
      CREATE TABLE shop_lease (shop text PRIMARY KEY, holder text NOT NULL, sidecar text NOT NULL, expires_at double precision NOT NULL);
      INSERT INTO shops (jid, name, welcome, no_agent_text, strategy, queue_enabled) VALUES ('old@x', 'Old', 'hello', 'nobody', 'sticky', true);
      INSERT INTO agents (jid, status) VALUES ('ann@x', 'dnd');
      INSERT INTO journal (shop, body) VALUES ('old@x', '[{"op":"enqueue","v":"v9@x","at":5}]');
    `);
    const stores = await openStores(url, me);
    try {
      assert.equal(
        (await stores.store.listShops()).map((s) => [s.jid, s.welcome, s.strategy]),
        [['old@x', 'hello', 'sticky']],
      );
      assert.equal(await stores.store.getAgent('ann@x'), { jid: 'ann@x', status: 'dnd' });
      assert.equal((await stores.journal.load('old@x')).batches, [[{ op: 'enqueue', v: 'v9@x', at: 5 }]]);
      await oursWork(stores, 'c1'); // version 3's archive was created, in consult
      // The sequences came along: a new journal row follows the old one (written under the shop's lease).
      assert.ok((await stores.leases.round(['old@x'])).held.has('old@x'));
      await stores.journal.append([{ shop: 'old@x', changes: [{ op: 'enqueue', v: 'v8@x', at: 6 }] }], []);
      assert.equal((await stores.journal.load('old@x')).batches.length, 2);
    } finally {
      await stores.store.close();
    }
    const ours = ['schema_version', 'shops', 'memberships', 'agents', 'resources', 'journal', 'snapshot_parts', 'shop_lease'];
    const where = async (schemaName: string) =>
      (await client.query(`SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename`, [schemaName])).rows.map(
        (r) => r.tablename as string,
      );
    const inPublic = await where('public');
    for (const t of ours) assert.not.ok(inPublic.includes(t), `public.${t} moved`);
    assert.ok(inPublic.includes('archive') && inPublic.includes('users'), "ejabberd's tables stay in public");
    assert.equal(await where('consult'), [...ours, 'archive', 'sidecars', 'audit'].sort());
    assert.equal((await client.query(`SELECT version FROM consult.schema_version`)).rows, [{ version: SCHEMA_VERSION }]);
    await ejabberdsWorks(client);
  } finally {
    await client.end();
  }
});

schema('a table in consult that is not ours stops the start, named with what it lacks', async (ctx) => {
  const { url, client } = await freshDb(ctx);
  try {
    // ejabberd connecting as a user called consult: "$user" first in its search_path puts its tables in our schema.
    await client.query(`CREATE SCHEMA consult; SET search_path TO consult; ${fs.readFileSync(EJABBERD_SQL[0], 'utf8')}`);
    const err = await openStores(url, me).then(
      async (s) => {
        await s.store.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.ok(err, 'the start is refused');
    assert.match(err!.message, /table consult\.archive is not consult-router's: it lacks the columns shop, visitor/);
  } finally {
    await client.end();
  }
});

schema.run();
