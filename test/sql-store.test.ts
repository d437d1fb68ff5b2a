// Store behaviour: one suite run on MemoryStore (the reference), SqlStore on PGlite (in memory) and SqlStore on a
// private PostgreSQL server; every case must give the same transcript on all three. The same for the journal
// (MemoryJournal vs SqlJournal). Then what only SQL stores do: persistence, the v1 migration, the lease.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { restore } from '../src/desk.js';
import type { JournalStore } from '../src/journal/journal.js';
import { SqlLease, type Lease } from '../src/journal/lease.js';
import { MemoryJournal } from '../src/journal/memory-journal.js';
import { LeaseLost, SqlJournal } from '../src/journal/sql-journal.js';
import { MemoryStore } from '../src/memory-store.js';
import type { Change } from '../src/routing/state.js';
import { openStores, pgDriver, pgliteDriver, SqlStore, storesOn, type Driver } from '../src/sql-store.js';
import { DEFAULT_LIMITS, type Shop, type Store } from '../src/store.js';
import { startPostgres, type Postgres } from './support/postgres.js';

let postgres: Postgres;
let pgliteDb: Driver;
let pgDb: Driver;
const TABLES = 'shops, memberships, agents, resources, journal, snapshot_parts, sidecar_lease';

// A fresh, empty store per case: SQL ones reuse the database connection and truncate.
const backends: Record<string, () => Promise<Store>> = {
  memory: async () => new MemoryStore(),
  pglite: async () => {
    await pgliteDb.query(`TRUNCATE ${TABLES}`);
    return SqlStore.open(pgliteDb);
  },
  postgres: async () => {
    await pgDb.query(`TRUNCATE ${TABLES}`);
    return SqlStore.open(pgDb);
  },
};

test.before(async () => {
  postgres = await startPostgres();
  pgDb = await pgDriver(postgres.url);
  pgliteDb = await pgliteDriver();
  await SqlStore.open(pgDb);
  await SqlStore.open(pgliteDb);
});

test.after(async () => {
  await pgliteDb?.close();
  await pgDb?.close();
  await postgres?.stop();
});

const shop = (jid: string, name = jid): Shop => ({
  jid,
  name,
  welcome: `hi from ${name}`,
  noAgentText: 'nobody',
  strategy: 'least-busy',
  queueEnabled: true,
  limits: DEFAULT_LIMITS,
  language: 'zh',
  groups: [{ name: 'pre', isDefault: true, agents: [], products: ['sku-1'] }],
  bot: { mode: 'bot-first', url: 'http://127.0.0.1:1/bot', timeoutMs: 1000, retries: 0 },
  texts: {},
});

/** Runs a case on every backend; its transcript (what the store returned) must equal MemoryStore's. */
function same(name: string, run: (s: Store) => Promise<unknown[]>) {
  test(name, async () => {
    const expected = await run(await backends.memory());
    for (const b of ['pglite', 'postgres']) {
      const store = await backends[b]();
      assert.equal(await run(store), expected, `${b} differs from memory`);
    }
  });
}

same('shops: upsert keeps order, getShop, deleteShop removes its memberships only', async (s) => {
  const out: unknown[] = [await s.listShops(), await s.getShop('a')];
  await s.putShop(shop('a'));
  await s.putShop({ ...shop('b'), strategy: 'round-robin', queueEnabled: false, limits: { ...DEFAULT_LIMITS, queueMax: 7 } });
  await s.putShop(shop('a', 'A renamed'));
  out.push(await s.listShops(), await s.getShop('a'));
  assert.equal(
    (await s.listShops()).map((x) => x.name),
    ['A renamed', 'b'],
  );
  await s.putMembership({ shop: 'a', agent: 'x', maxSessions: 2, joinedAt: 5 });
  await s.putMembership({ shop: 'b', agent: 'x', maxSessions: 1, joinedAt: 6 });
  await s.deleteShop('a');
  out.push(await s.listShops(), await s.getShop('a'), await s.memberships());
  assert.equal(
    (await s.memberships()).map((m) => m.shop),
    ['b'],
  );
  await s.putShop(shop('a')); // re-created: goes to the end
  out.push(await s.listShops());
  return out;
});

same('memberships: upsert keeps order, delete', async (s) => {
  await s.putMembership({ shop: 's1', agent: 'a1', maxSessions: 2, joinedAt: 10 });
  await s.putMembership({ shop: 's1', agent: 'a2', maxSessions: 1, joinedAt: 11 });
  await s.putMembership({ shop: 's2', agent: 'a1', maxSessions: 3, joinedAt: 12 });
  await s.putMembership({ shop: 's1', agent: 'a1', maxSessions: 5, joinedAt: 13 });
  const out: unknown[] = [await s.memberships()];
  await s.deleteMembership('s1', 'a2');
  await s.deleteMembership('s1', 'nobody');
  out.push(await s.memberships());
  return out;
});

same('agents: get, put, update', async (s) => {
  const out: unknown[] = [await s.getAgent('a')];
  await s.putAgent({ jid: 'a', status: 'standard' });
  out.push(await s.getAgent('a'));
  await s.putAgent({ jid: 'a', status: 'dnd' });
  await s.putAgent({ jid: 'b', status: 'always-on' });
  out.push(await s.getAgent('a'), await s.getAgent('b'));
  return out;
});

same('resources: upsert keeps order, remove, clearNode', async (s) => {
  await s.setResource({ agent: 'a', resource: 'r1', node: 'n1', show: '', priority: 5 });
  await s.setResource({ agent: 'a', resource: 'r2', node: 'n1', show: 'away', priority: -1 });
  await s.setResource({ agent: 'b', resource: 'r1', node: 'n2', show: 'dnd', priority: 0 });
  await s.setResource({ agent: 'c', resource: 'r1', node: 'n2', show: 'xa', priority: 0 });
  await s.setResource({ agent: 'a', resource: 'r1', node: 'n2', show: 'chat', priority: 7 }); // moved to n2
  const out: unknown[] = [await s.resources()];
  await s.removeResource('c', 'r1');
  await s.removeResource('c', 'missing');
  out.push(await s.resources());
  await s.clearNode('n1');
  out.push(await s.resources());
  await s.clearNode('n2');
  out.push(await s.resources());
  return out;
});

// ---- the journal: the same on all three -------------------------------------------

const leases: Lease[] = []; // released before the lease test, so no renewer is left running
const sqlJournal = async (db: Driver) => {
  const st = await storesOn(db, 'j');
  await db.query(`TRUNCATE ${TABLES}`);
  await st.lease.acquire();
  leases.push(st.lease);
  return st.journal;
};
const journals: Record<string, () => Promise<JournalStore>> = {
  memory: async () => new MemoryJournal(),
  pglite: () => sqlJournal(pgliteDb),
  postgres: () => sqlJournal(pgDb),
};

function sameJournal(name: string, run: (j: JournalStore) => Promise<unknown[]>) {
  test(name, async () => {
    const expected = await run(await journals.memory());
    for (const b of ['pglite', 'postgres']) assert.equal(await run(await journals[b]()), expected, `${b} differs from memory`);
  });
}

const open = (v: string, agent: string, at: number): Change => ({ op: 'open', v, agent, at });
const said = (v: string, at: number): Change => ({
  op: 'said',
  v,
  by: 'visitor',
  at,
  xml: `<message id='${v}${at}'>é &amp; 客服</message>`,
});

sameJournal('journal: batches load back in order, per shop; a snapshot supersedes what came before it', async (j) => {
  await j.append(
    [
      { shop: 's1', changes: [open('v1', 'a', 1), said('v1', 2)] },
      { shop: 's2', changes: [open('v9', 'b', 3)] },
    ],
    [],
  );
  await j.append([{ shop: 's1', changes: [said('v1', 4)] }], []);
  const out: unknown[] = [await j.load('s1'), await j.load('s2'), await j.load('nobody')];
  const st = restore('s1', DEFAULT_LIMITS, await j.load('s1'));
  assert.equal([st.sessions.get('v1')?.lastVisitorAt, st.history.get('v1')?.length], [4, 2]);
  await j.append([{ shop: 's1', changes: [said('v1', 5)] }], [{ shop: 's1', parts: st.snapshotParts() }]);
  out.push(await j.load('s1')); // the snapshot (taken before v1's 5) and nothing after it: that batch is in the snapshot's past
  await j.append([{ shop: 's1', changes: [said('v1', 6)] }], []);
  out.push(await j.load('s1'));
  await j.forget('s2');
  out.push(await j.load('s2'));
  return out;
});

// ---- what only SQL stores do --------------------------------------------------------

test('pglite: persisted to a directory, survives close and reopen (shops and journal)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-test-'));
  try {
    const a = await openStores(`pglite:${dir}/db`, 'one');
    await a.lease!.acquire();
    await a.store.putShop(shop('s1'));
    await a.journal.append(
      [{ shop: 's1', changes: [open('v1', 'a1', 1), { op: 'enqueue', v: 'v2', at: 5 }, { op: 'keep', v: 'v2', at: 5, xml: '<held/>' }] }],
      [],
    );
    await a.lease!.release();
    await a.store.close();
    const b = await openStores(`pglite:${dir}/db`, 'two'); // schema creation is idempotent
    await b.lease!.acquire();
    assert.equal(await b.store.listShops(), [shop('s1')]);
    const st = restore('s1', DEFAULT_LIMITS, await b.journal.load('s1'));
    assert.equal([[...st.sessions.keys()], [...st.queue], st.kept.get('v2')], [['v1'], [['v2', 5]], [{ at: 5, xml: '<held/>' }]]);
    await b.store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('openStores: memory:, pglite:memory, unknown url', async () => {
  const m = await openStores('memory:', 'x');
  assert.instance(m.store, MemoryStore);
  assert.instance(m.journal, MemoryJournal);
  assert.is(m.lease, undefined);
  const p = await openStores('pglite:memory', 'x');
  assert.instance(p.store, SqlStore);
  assert.instance(p.journal, SqlJournal);
  await p.store.close();
  await openStores('mysql://x', 'x').then(
    () => assert.unreachable('should throw'),
    (e) => assert.match(e.message, /unknown store url/),
  );
});

test('schema version 1 (state in tables) is migrated into one snapshot per shop', async () => {
  const db = await pgliteDriver();
  try {
    for (const sql of [
      `CREATE TABLE schema_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)`,
      `INSERT INTO schema_version VALUES (1, 1)`,
      `CREATE TABLE shops (jid text PRIMARY KEY, name text NOT NULL, welcome text NOT NULL, no_agent_text text NOT NULL, strategy text NOT NULL, queue_enabled boolean NOT NULL, seq bigserial)`,
      `CREATE TABLE agents (jid text PRIMARY KEY, status text NOT NULL)`,
      `CREATE TABLE sessions (shop text, visitor text, agent text NOT NULL, started_at double precision NOT NULL, last_visitor_at double precision NOT NULL, last_agent_at double precision NOT NULL, reminded_at double precision NOT NULL, orphaned_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, visitor))`,
      `CREATE TABLE queue (shop text, visitor text, enqueued_at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, visitor))`,
      `CREATE TABLE held (seq bigserial PRIMARY KEY, shop text NOT NULL, visitor text NOT NULL, at double precision NOT NULL, xml text NOT NULL)`,
      `CREATE TABLE assigned (shop text, agent text, at double precision NOT NULL, seq bigserial, PRIMARY KEY (shop, agent))`,
      `CREATE TABLE sticky (shop text, visitor text, agent text NOT NULL, until_at double precision NOT NULL, PRIMARY KEY (shop, visitor))`,
      `CREATE TABLE history (seq bigserial PRIMARY KEY, shop text NOT NULL, visitor text NOT NULL, at double precision NOT NULL, xml text NOT NULL)`,
      `CREATE TABLE shop_version (shop text PRIMARY KEY, version text NOT NULL)`,
      `INSERT INTO shops (jid, name, welcome, no_agent_text, strategy, queue_enabled) VALUES ('s1', 'S', 'hi', 'nobody', 'sticky', true)`,
      `INSERT INTO agents VALUES ('a1', 'dnd')`,
      `INSERT INTO sessions (shop, visitor, agent, started_at, last_visitor_at, last_agent_at, reminded_at, orphaned_at) VALUES ('s1', 'v1', 'a1', 1, 2, 3, 0, 0)`,
      `INSERT INTO queue (shop, visitor, enqueued_at) VALUES ('s1', 'v3', 7), ('s1', 'v2', 8)`,
      `INSERT INTO held (shop, visitor, at, xml) VALUES ('s1', 'v3', 7, '<a/>'), ('s1', 'v3', 9, '<b/>')`,
      `INSERT INTO history (shop, visitor, at, xml) VALUES ('s1', 'v1', 2, '<h/>')`,
      `INSERT INTO assigned (shop, agent, at) VALUES ('s1', 'a1', 1)`,
      `INSERT INTO sticky VALUES ('s1', 'v0', 'a1', 99)`,
    ])
      await db.query(sql);
    const { store, journal, lease } = await storesOn(db, 'm');
    await lease.acquire();
    assert.equal(
      (await store.listShops()).map((x) => [x.jid, x.strategy, x.limits]),
      [['s1', 'sticky', DEFAULT_LIMITS]],
    );
    assert.equal(await store.getAgent('a1'), { jid: 'a1', status: 'dnd' });
    const st = restore('s1', DEFAULT_LIMITS, await journal.load('s1'));
    assert.equal(st.sessions.get('v1'), {
      visitor: 'v1',
      shop: 's1',
      agent: 'a1',
      startedAt: 1,
      lastVisitorAt: 2,
      lastAgentAt: 3,
      remindedAt: 0,
      orphanedAt: 0,
    });
    assert.equal([...st.queue.keys()], ['v3', 'v2']);
    assert.equal(st.kept.get('v3'), [
      { at: 7, xml: '<a/>' },
      { at: 9, xml: '<b/>' },
    ]);
    assert.equal([st.history.get('v1'), st.lastAssigned.get('a1'), st.stickyAgent('v0', 50)], [[{ at: 2, xml: '<h/>' }], 1, 'a1']);
    const [{ version }] = await db.query(`SELECT version FROM schema_version`);
    assert.is(version, 2);
    assert.is((await db.query(`SELECT to_regclass('sessions') AS t`))[0].t, null, 'old tables dropped');
  } finally {
    await db.close();
  }
});

test('postgres lease: one writer; the other stands by, takes over on release or expiry; a stale writer is fenced', async () => {
  for (const l of leases.splice(0)) await l.release();
  await pgDb.query(`TRUNCATE ${TABLES}`);
  const first = await storesOn(pgDb, 'first', 600);
  const second = await storesOn(pgDb, 'second', 600);
  await first.lease.acquire();
  let waiting = '';
  let secondHolds = false;
  const standby = second.lease
    .acquire({
      onWait: (by) => {
        waiting = by;
      },
    })
    .then(() => {
      secondHolds = true;
    });
  await new Promise((r) => setTimeout(r, 400));
  assert.is(waiting, 'first');
  assert.is(secondHolds, false, 'the second waits while the first renews');
  await first.journal.append([{ shop: 's', changes: [open('v1', 'a', 1)] }], []);
  await first.lease.release();
  await standby;
  assert.is(secondHolds, true);
  await first.journal.append([{ shop: 's', changes: [open('v2', 'a', 2)] }], []).then(
    () => assert.unreachable('a former holder must not write'),
    (e) => assert.instance(e, LeaseLost),
  );
  await second.journal.append([{ shop: 's', changes: [said('v1', 3)] }], []);
  assert.equal(
    (await second.journal.load('s')).batches.map((b) => b.map((c) => c.op)),
    [['open'], ['said']],
  );

  // Expiry: a holder that stops renewing (paused, cut off) loses the lease; it learns so when it renews.
  const third = new SqlLease(pgDb, 'third', 600);
  let lost = '';
  second.lease.onLost((why) => {
    lost = why;
  });
  await pgDb.query(`UPDATE sidecar_lease SET expires_at = 0`); // as if second had not renewed in time
  await third.acquire();
  await new Promise((r) => setTimeout(r, 400));
  assert.match(lost, 'taken over by third');
  await third.release();
});

test.run();
