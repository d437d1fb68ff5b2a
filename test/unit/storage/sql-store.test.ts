// Store behaviour: one suite run on MemoryStore (the reference), SqlStore on PGlite (in memory) and SqlStore on a
// private PostgreSQL server; every case must give the same transcript on all three. The same for the journal
// (MemoryJournal vs SqlJournal). Then what only SQL stores do: persistence, the v1 migration, the lease.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { restore } from '../../../src/desk/held-shops.js';
import type { JournalStore } from '../../../src/desk/journal.js';
import { candidates, plan, preferredOwner } from '../../../src/cluster/leases.js';
import { MemoryJournal } from '../../../src/storage/memory-journal.js';
import { LeaseLost, SqlJournal } from '../../../src/storage/sql-journal.js';
import { MemoryStore } from '../../../src/storage/memory-store.js';
import type { Change } from '../../../src/routing/state.js';
import { openStores, storesOn } from '../../../src/storage/open.js';
import { pgDriver, pgliteDriver, type Driver } from '../../../src/storage/driver.js';
import { SqlStore } from '../../../src/storage/sql-store.js';
import { DEFAULT_LIMITS, type Shop } from '../../../src/domain/shop.js';
import type { Store } from '../../../src/desk/ports.js';
import { startPostgres, type Postgres } from '../../support/postgres.js';
import { SCHEMA_VERSION } from '../../../src/storage/schema.js';
import { setUpSuite } from '../../support/suite.js';

let postgres: Postgres;
let pgliteDb: Driver;
let pgDb: Driver;
const TABLES = 'shops, memberships, agents, resources, journal, snapshot_parts, shop_lease, sidecars';

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

setUpSuite(test, async () => {
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

same('a shop’s own webhook: stored, off (false), replaced and removed', async (s) => {
  await s.putShop({ ...shop('a'), events: { url: 'https://h.example/e', secret: 'a-secret-of-16-chars', timeoutMs: 900 } });
  const out: unknown[] = [await s.getShop('a')];
  await s.putShop({ ...shop('a'), events: false });
  out.push(await s.getShop('a'));
  await s.putShop(shop('a'));
  out.push(await s.getShop('a'));
  assert.not.ok('events' in (await s.getShop('a'))!);
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

const sqlJournal = async (db: Driver, shared: boolean) => {
  const st = await storesOn(db, { holder: 'j#1', sidecar: 'j' }, { shared });
  await db.query(`TRUNCATE ${TABLES}`);
  await st.leases.round(['s1', 's2', 'nobody']); // PostgreSQL: fenced writes need the shops' leases
  return st.journal;
};
const journals: Record<string, () => Promise<JournalStore>> = {
  memory: async () => new MemoryJournal(),
  pglite: () => sqlJournal(pgliteDb, false),
  postgres: () => sqlJournal(pgDb, true),
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
    const a = await openStores(`pglite:${dir}/db`, { holder: 'one#1', sidecar: 'one' });
    await a.store.putShop(shop('s1'));
    await a.journal.append(
      [{ shop: 's1', changes: [open('v1', 'a1', 1), { op: 'enqueue', v: 'v2', at: 5 }, { op: 'keep', v: 'v2', at: 5, xml: '<held/>' }] }],
      [],
    );
    await a.store.close();
    const b = await openStores(`pglite:${dir}/db`, { holder: 'two#1', sidecar: 'two' }); // schema creation is idempotent
    assert.equal(await b.store.listShops(), [shop('s1')]);
    const st = restore('s1', DEFAULT_LIMITS, await b.journal.load('s1'));
    assert.equal([[...st.sessions.keys()], [...st.queue], st.kept.get('v2')], [['v1'], [['v2', 5]], [{ at: 5, xml: '<held/>' }]]);
    await b.store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('openStores: memory:, pglite:memory, unknown url', async () => {
  const me = { holder: 'x#1', sidecar: 'x' };
  const m = await openStores('memory:', me);
  assert.instance(m.store, MemoryStore);
  assert.instance(m.journal, MemoryJournal);
  assert.equal([...(await m.leases.round(['a', 'b'])).held], ['a', 'b'], 'one process owns every shop');
  const p = await openStores('pglite:memory', me);
  assert.instance(p.store, SqlStore);
  assert.instance(p.journal, SqlJournal);
  await p.store.close();
  await openStores('mysql://x', me).then(
    () => assert.unreachable('should throw'),
    (e) => assert.match(e.message, /unknown store url/),
  );
});

test('schema version 1 (state in tables, in the schema public) is migrated into one snapshot per shop, in the schema consult', async () => {
  const db = await pgliteDriver();
  try {
    await db.query('SET search_path TO public'); // where versions 1 to 3 kept their tables
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
    await db.query('SET search_path TO consult');
    const { store, journal } = await storesOn(db, { holder: 'm#1', sidecar: 'm' }, { shared: false });
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
    assert.is(version, SCHEMA_VERSION);
    assert.is((await db.query(`SELECT to_regclass('sessions') AS t`))[0].t, null, 'old tables dropped');
    const [{ left }] = await db.query(`SELECT count(*)::int AS left FROM pg_tables WHERE schemaname = 'public'`);
    assert.is(left, 0, 'nothing of ours is left in public');
  } finally {
    await db.close();
  }
});

/** What plan() decides to do (not which shops it found to be its own). */
const decisions = (...args: Parameters<typeof plan>) => {
  const { take, handOver } = plan(...args);
  return { take, handOver };
};

test('who should own a shop: rendezvous over live sidecars; take free ones, hand over misplaced ones', () => {
  const shops = Array.from({ length: 200 }, (_, i) => `shop${i}@x`);
  const live = ['a', 'b', 'c'];
  const counts = new Map<string, number>();
  for (const s of shops) counts.set(preferredOwner(s, live)!, (counts.get(preferredOwner(s, live)!) ?? 0) + 1);
  assert.ok(
    [...counts.values()].every((n) => n > 40),
    `spread over all three: ${[...counts]}`,
  );
  // Removing c moves only c's shops.
  const moved = shops.filter((s) => preferredOwner(s, live) !== preferredOwner(s, ['a', 'b']));
  assert.ok(moved.every((s) => preferredOwner(s, live) === 'c'));

  const me = { holder: 'a#1', sidecar: 'a' };
  const mine = shops.find((s) => preferredOwner(s, live) === 'a')!;
  const theirs = shops.find((s) => preferredOwner(s, live) === 'b')!;
  const row = (shop: string, holder: string, leftMs: number) => ({ shop, holder, sidecar: holder.split('#')[0], leftMs });
  // Free shops: mine is taken; b's is left to b (alive).
  assert.equal(decisions(me, [mine, theirs], [], live, 5000), { take: [mine], handOver: [] });
  assert.equal(decisions(me, [mine, theirs], [row(theirs, 'b#1', -10)], live, 5000), { take: [mine], handOver: [] });
  // ... unless it has been unowned for more than a lease period: then anyone takes it.
  assert.equal(decisions(me, [theirs], [row(theirs, 'b#1', -6000)], live, 5000), { take: [theirs], handOver: [] });
  // Held by another and valid: left alone, even if it should be mine (its holder hands it over).
  assert.equal(decisions(me, [mine], [row(mine, 'c#1', 3000)], live, 5000), { take: [], handOver: [] });
  // Held by me but belonging to a live other: handed over.
  assert.equal(decisions(me, [theirs, mine], [row(theirs, 'a#1', 3000), row(mine, 'a#1', 3000)], live, 5000), {
    take: [],
    handOver: [theirs],
  });
  // A restarted sidecar (same id, new holder) takes its shops once the old holder's lease expired.
  assert.equal(decisions({ holder: 'a#2', sidecar: 'a' }, [mine], [row(mine, 'a#1', -1)], live, 5000), { take: [mine], handOver: [] });
});

test('candidate owners: the ready sidecars; one not ready yet counts itself only while no ready one serves', () => {
  const beats = [
    { sidecar: 'b', ready: true },
    { sidecar: 'c', ready: false },
  ];
  assert.equal(candidates('a', beats, true), ['a', 'b']);
  assert.equal(candidates('a', beats, false), ['b'], 'not ready: the live standby keeps serving');
  assert.equal(candidates('a', [{ sidecar: 'c', ready: false }], false), ['a'], 'nobody ready: the first to start serves');
  assert.equal(candidates('a', [{ sidecar: 'a', ready: true }], false), ['a'], "its own predecessor's heartbeat counts for its id");
});

test('postgres leases: a sidecar not ready yet gets nothing handed over until it is; every take is a new epoch', async () => {
  await pgDb.query(`TRUNCATE ${TABLES}`);
  const shops = Array.from({ length: 10 }, (_, i) => `shop${i}@x`);
  const one = await storesOn(pgDb, { holder: 'one#1', sidecar: 'one' }, { shared: true, leaseTtlMs: 60_000 });
  const two = await storesOn(pgDb, { holder: 'two#1', sidecar: 'two', ready: false }, { shared: true, leaseTtlMs: 60_000 });
  const first = await one.leases.round(shops);
  assert.equal(first.held.size, 10);
  assert.equal(new Set(first.epochs.values()), new Set([1]), 'first taken: epoch 1');
  assert.equal((await two.leases.round(shops)).held.size, 0);
  const before = await one.leases.round(shops);
  assert.equal(before.handOver, [], 'a sidecar the shims cannot reach yet is no candidate owner');
  assert.equal(before.live, ['one']);

  two.leases.markReady();
  await two.leases.round(shops);
  const after = await one.leases.round(shops);
  const theirs = shops.filter((s) => preferredOwner(s, ['one', 'two']) === 'two');
  assert.equal(after.handOver.sort(), [...theirs].sort(), 'ready: its share is handed over');
  assert.equal(after.live, ['one', 'two']);
  await one.leases.release(theirs);
  const taken = await two.leases.round(shops);
  assert.equal([...taken.held].sort(), [...theirs].sort());
  for (const shop of theirs) assert.is(taken.epochs.get(shop), 2, `${shop}: taken again, the next epoch`);
  const renewed = await two.leases.round(shops);
  assert.equal(renewed.epochs, taken.epochs, 'renewing keeps the epoch');
  await one.leases.releaseAll();
  await two.leases.releaseAll();
});

test('postgres leases: shops spread over two sidecars; handed over cleanly; taken after expiry; a stale writer is fenced', async () => {
  await pgDb.query(`TRUNCATE ${TABLES}`);
  const shops = Array.from({ length: 20 }, (_, i) => `shop${i}@x`);
  const one = await storesOn(pgDb, { holder: 'one#1', sidecar: 'one' }, { shared: true, leaseTtlMs: 600 });
  const two = await storesOn(pgDb, { holder: 'two#1', sidecar: 'two' }, { shared: true, leaseTtlMs: 600 });
  const first = await one.leases.round(shops);
  assert.equal(first.held.size, 20, 'alone, it takes every shop');
  assert.equal(first.handOver, []);
  await one.journal.append([{ shop: shops[0], changes: [open('v1', 'a', 1)] }], []);

  // Releases and joins are announced (NOTIFY), so the others need not wait for their next round.
  let announced = 0;
  await one.leases.watch!(() => announced++);
  const heard = async (what: string) => {
    for (let i = 0; announced === 0; i++) {
      if (i > 200) assert.unreachable(`${what} was not announced`);
      await new Promise((r) => setTimeout(r, 10));
    }
    announced = 0;
  };
  // The second joins: the first learns on its next round which shops belong to the second.
  assert.equal((await two.leases.round(shops)).held.size, 0, 'nothing free yet');
  await heard('the join');
  const r = await one.leases.round(shops);
  const theirs = shops.filter((s) => preferredOwner(s, ['one', 'two']) === 'two');
  assert.equal(r.handOver.sort(), [...theirs].sort());
  assert.ok(theirs.length > 3 && theirs.length < 17, `about half: ${theirs.length}`);
  let released = 0;
  await two.leases.watch!(() => released++);
  await one.leases.release(theirs);
  for (let i = 0; released === 0; i++) {
    if (i > 200) assert.unreachable('the release was not announced');
    await new Promise((r) => setTimeout(r, 10));
  }
  const again = await one.leases.round(shops);
  assert.not.ok(
    theirs.some((s) => again.held.has(s)),
    'what it released, its next round does not renew',
  );
  const taken = await two.leases.round(shops);
  assert.equal([...taken.held].sort(), [...theirs].sort(), 'released shops are taken by their sidecar at once');

  // A former holder's write to a shop it gave up is refused, and the error names it.
  const gone = theirs[0];
  await one.journal.append([{ shop: gone, changes: [open('v2', 'a', 2)] }], []).then(
    () => assert.unreachable('a former holder must not write'),
    (e) => {
      assert.instance(e, LeaseLost);
      assert.equal(e.shops, [gone]);
    },
  );
  // Mixed batches are refused whole: nothing of them is written.
  const kept = shops.find((s) => !theirs.includes(s))!;
  await one.journal
    .append(
      [
        { shop: kept, changes: [open('v3', 'a', 3)] },
        { shop: gone, changes: [open('v4', 'a', 4)] },
      ],
      [],
    )
    .then(
      () => assert.unreachable('refused'),
      (e) => assert.equal(e.shops, [gone]),
    );
  assert.not.ok(JSON.stringify((await one.journal.load(kept)).batches).includes('v3'), 'the held shop of a refused batch got nothing');
  await two.journal.append([{ shop: gone, changes: [said('v1', 3)] }], []);

  // The first stops renewing (crash): once its heartbeat and leases have run out (by the database's clock), the second
  // takes everything.
  const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)';
  for (let i = 0; ; i++) {
    const [{ live }] = await pgDb.query(
      `SELECT (SELECT count(*) FROM sidecars WHERE holder = 'one#1' AND expires_at >= ${NOW_MS})
            + (SELECT count(*) FROM shop_lease WHERE holder = 'one#1' AND expires_at >= ${NOW_MS}) AS live`,
    );
    if (Number(live) === 0) break;
    if (i > 500) assert.unreachable("the first sidecar's heartbeat and leases never ran out");
    await new Promise((r) => setTimeout(r, 10));
  }
  const all = await two.leases.round(shops);
  assert.equal(all.held.size, 20, "a dead sidecar's shops go to the one left");
  assert.equal((await one.leases.round(shops)).held.size, 0, 'the old holder finds it holds nothing');
  await one.leases.releaseAll();
  await two.leases.releaseAll();
});

test.run();
