// Store behaviour: one suite run on MemoryStore (the reference), SqlStore on PGlite (in memory) and SqlStore on a
// private PostgreSQL server; every case must give the same transcript on all three. Then what only SQL stores do:
// rollback, persistence, cross-process locking and cache invalidation.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../src/memory-store.js';
import { openStore, pgDriver, pgliteDriver, SqlStore, type Driver } from '../src/sql-store.js';
import type { Session, Shop, Store } from '../src/store.js';
import { startPostgres, type Postgres } from './support/postgres.js';

let postgres: Postgres;
let pgliteDb: Driver;
let pgDb: Driver;
const TABLES = 'shops, memberships, agents, resources, sessions, queue, held, assigned, sticky, history, shop_version';

// A fresh, empty store per case: SQL ones reuse the database connection and truncate.
const backends: Record<string, () => Promise<Store>> = {
  memory: async () => new MemoryStore(),
  pglite: async () => { await pgliteDb.query(`TRUNCATE ${TABLES}`); return SqlStore.open(pgliteDb); },
  postgres: async () => { await pgDb.query(`TRUNCATE ${TABLES}`); return SqlStore.open(pgDb); },
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

const shop = (jid: string, name = jid): Shop =>
  ({ jid, name, welcome: `hi from ${name}`, noAgentText: 'nobody', strategy: 'least-busy', queueEnabled: true });
const session = (shop: string, visitor: string, agent: string, t = 1): Session =>
  ({ visitor, shop, agent, startedAt: t, lastVisitorAt: 0, lastAgentAt: t + 0.5, remindedAt: 0, orphanedAt: 1_700_000_000_123 });

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
  await s.putShop({ ...shop('b'), strategy: 'round-robin', queueEnabled: false });
  await s.putShop(shop('a', 'A renamed'));
  out.push(await s.listShops(), await s.getShop('a'));
  assert.equal((await s.listShops()).map((x) => x.name), ['A renamed', 'b']);
  await s.putMembership({ shop: 'a', agent: 'x', maxSessions: 2, joinedAt: 5 });
  await s.putMembership({ shop: 'b', agent: 'x', maxSessions: 1, joinedAt: 6 });
  await s.deleteShop('a');
  out.push(await s.listShops(), await s.getShop('a'), await s.memberships());
  assert.equal((await s.memberships()).map((m) => m.shop), ['b']);
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

same('sessions: put/get/update/delete, per shop and all, copies', async (s) => {
  const out: unknown[] = [];
  await s.withShop('s1', async (tx) => {
    out.push(await tx.getSession('v1'), await tx.sessions());
    await tx.putSession(session('s1', 'v1', 'a1'));
    await tx.putSession(session('s1', 'v2', 'a2'));
  });
  await s.withShop('s2', async (tx) => void await tx.putSession(session('s2', 'v1', 'a9')));
  await s.withShop('s1', async (tx) => {
    const got = (await tx.getSession('v1'))!;
    out.push(got);
    got.agent = 'mutated'; // a returned object is a copy
    out.push(await tx.getSession('v1'));
    const mine = session('s1', 'v1', 'a3', 7);
    await tx.putSession(mine); // update keeps its place
    mine.agent = 'mutated after put';
    out.push(await tx.getSession('v1'), await tx.sessions());
  });
  out.push(await s.allSessions());
  await s.withShop('s1', async (tx) => {
    await tx.deleteSession('v1');
    await tx.deleteSession('nobody');
    out.push(await tx.getSession('v1'), await tx.sessions());
    await tx.putSession(session('s1', 'v1', 'a4')); // re-created: goes to the end
    out.push(await tx.sessions());
  });
  out.push(await s.allSessions(), await s.withShop('s2', (tx) => tx.sessions()));
  assert.equal((await s.allSessions()).map((x) => `${x.shop}/${x.visitor}/${x.agent}`), ['s1/v2/a2', 's2/v1/a9', 's1/v1/a4']);
  return out;
});

same('queue: oldest first, enqueue is a no-op if present, dequeue, per shop', async (s) => {
  const out: unknown[] = [];
  await s.withShop('s1', async (tx) => {
    out.push(await tx.queue());
    await tx.enqueue('v1', 1);
    await tx.enqueue('v2', 2);
    await tx.enqueue('v1', 3);
    out.push(await tx.queue());
    assert.equal((await tx.queue()).map((e) => [e.visitor, e.enqueuedAt]), [['v1', 1], ['v2', 2]]);
    await tx.dequeue('v1');
    await tx.dequeue('nobody');
    await tx.enqueue('v1', 4);
    out.push(await tx.queue());
  });
  await s.withShop('s2', async (tx) => {
    await tx.enqueue('v1', 5);
    out.push(await tx.queue());
  });
  out.push(await s.withShop('s1', (tx) => tx.queue()));
  return out;
});

same('held: kept in order, takeHeld returns and deletes, per visitor and shop', async (s) => {
  const out: unknown[] = [];
  await s.withShop('s1', async (tx) => {
    out.push(await tx.takeHeld('v1'));
    for (const [i, v] of ['v1', 'v2', 'v1', 'v1'].entries()) await tx.hold(v, { at: 10 - i, xml: `<m n='${i}'/>` });
  });
  await s.withShop('s2', async (tx) => tx.hold('v1', { at: 1, xml: '<other/>' }));
  await s.withShop('s1', async (tx) => {
    const taken = await tx.takeHeld('v1');
    assert.equal(taken.map((m) => m.xml), [`<m n='0'/>`, `<m n='2'/>`, `<m n='3'/>`]);
    out.push(taken, await tx.takeHeld('v1'), await tx.takeHeld('v2'));
  });
  out.push(await s.withShop('s2', (tx) => tx.takeHeld('v1')));
  return out;
});

same('lastAssigned / markAssigned: per shop, update keeps order', async (s) => {
  const out: unknown[] = [];
  await s.withShop('s1', async (tx) => {
    out.push(await tx.lastAssigned());
    await tx.markAssigned('a', 100);
    await tx.markAssigned('b', 200);
    await tx.markAssigned('a', 300);
    out.push(await tx.lastAssigned());
    assert.equal([...(await tx.lastAssigned())], [['a', 300], ['b', 200]]);
  });
  out.push(await s.withShop('s2', (tx) => tx.lastAssigned()));
  return out;
});

same('sticky: only until `until`, overwrite, per shop', async (s) => {
  const out: unknown[] = [];
  await s.withShop('s1', async (tx) => {
    out.push(await tx.stickyAgent('v', 0));
    await tx.setSticky('v', 'a', 100);
    out.push(await tx.stickyAgent('v', 99), await tx.stickyAgent('v', 100), await tx.stickyAgent('v', 101));
    assert.is(await tx.stickyAgent('v', 99.5), 'a');
    assert.is(await tx.stickyAgent('v', 100), undefined);
    await tx.setSticky('v', 'b', 50);
    out.push(await tx.stickyAgent('v', 49), await tx.stickyAgent('v', 60));
  });
  out.push(await s.withShop('s2', (tx) => tx.stickyAgent('v', 0)));
  return out;
});

same('history: keeps the newest `keep`, per visitor and shop, clear', async (s) => {
  const out: unknown[] = [];
  await s.withShop('s1', async (tx) => {
    out.push(await tx.history('v1'));
    for (let i = 1; i <= 5; i++) await tx.appendHistory('v1', { at: i, xml: `<h${i}/>` }, 3);
    await tx.appendHistory('v2', { at: 9, xml: '<v2/>' }, 3);
    out.push(await tx.history('v1'), await tx.history('v2'));
    assert.equal((await tx.history('v1')).map((h) => h.at), [3, 4, 5]);
    await tx.appendHistory('v1', { at: 6, xml: '<h6/>' }, 1);
    out.push(await tx.history('v1'));
    await tx.appendHistory('v1', { at: 7, xml: '<h7/>' }, 10);
    out.push(await tx.history('v1'));
  });
  await s.withShop('s2', async (tx) => {
    out.push(await tx.history('v1'));
    await tx.appendHistory('v1', { at: 1, xml: '<s2/>' }, 2);
  });
  await s.withShop('s1', async (tx) => {
    await tx.clearHistory('v1');
    out.push(await tx.history('v1'), await tx.history('v2'));
  });
  out.push(await s.withShop('s2', (tx) => tx.history('v1')));
  return out;
});

same('withShop returns the work result; calls on one shop run one at a time', async (s) => {
  const order: string[] = [];
  const slow = (name: string, ms: number) => s.withShop('s1', async (tx) => {
    order.push(`${name} start`);
    await tx.enqueue(name, ms);
    await new Promise((r) => setTimeout(r, ms));
    order.push(`${name} end`);
    return name;
  });
  const results = await Promise.all([slow('first', 30), slow('second', 1)]);
  assert.equal(order, ['first start', 'first end', 'second start', 'second end']);
  return [results, order, await s.withShop('s1', (tx) => tx.queue())];
});

same('store calls and another shop\'s withShop inside withShop (no self-deadlock on one connection)', async (s) => {
  await s.putShop(shop('s1'));
  await s.putMembership({ shop: 's2', agent: 'a', maxSessions: 1, joinedAt: 1 });
  const out = await s.withShop('s1', async (tx) => {
    await tx.putSession(session('s1', 'v', 'a'));
    await s.putAgent({ jid: 'a', status: 'standard' });
    await s.deleteShop('s2');
    const inner = await s.withShop('s2', async (tx2) => {
      await tx2.enqueue('v', 1);
      return tx2.queue();
    });
    return [await s.listShops(), await s.getAgent('a'), await s.memberships(), await s.allSessions(), inner, await tx.sessions()];
  });
  return [out, await s.allSessions(), await s.withShop('s2', (tx) => tx.queue())];
});

// ---- SQL only ----

for (const b of ['pglite', 'postgres']) {
  test(`${b}: a withShop that throws leaves nothing behind (and no stale cache)`, async () => {
    const s = await backends[b]();
    await s.withShop('s1', (tx) => tx.putSession(session('s1', 'v0', 'a')));
    const boom = new Error('boom');
    const err = await s.withShop('s1', async (tx) => {
      await tx.putSession(session('s1', 'v1', 'a'));
      await tx.deleteSession('v0');
      await tx.enqueue('v1', 1);
      await tx.hold('v1', { at: 1, xml: '<x/>' });
      await tx.markAssigned('a', 1);
      await tx.setSticky('v1', 'a', 1e15);
      await tx.appendHistory('v1', { at: 1, xml: '<x/>' }, 5);
      assert.is((await tx.getSession('v1'))?.agent, 'a');
      throw boom;
    }).catch((e) => e);
    assert.is(err, boom);
    const after = await s.withShop('s1', async (tx) => [
      await tx.getSession('v1'), (await tx.getSession('v0'))?.visitor, await tx.sessions(), await tx.queue(),
      await tx.takeHeld('v1'), await tx.lastAssigned(), await tx.stickyAgent('v1', 0), await tx.history('v1'),
    ]);
    assert.equal(after, [undefined, 'v0', [session('s1', 'v0', 'a')], [], [], new Map(), undefined, []]);
  });
}

test('pglite: persisted to a directory, survives close and reopen', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-test-'));
  try {
    const a = await openStore(`pglite:${dir}/db`);
    await a.putShop(shop('s1'));
    await a.withShop('s1', async (tx) => {
      await tx.putSession(session('s1', 'v1', 'a1'));
      await tx.enqueue('v2', 5);
      await tx.hold('v2', { at: 5, xml: '<held/>' });
    });
    await a.close();
    const b = await openStore(`pglite:${dir}/db`); // schema creation is idempotent
    assert.equal(await b.listShops(), [shop('s1')]);
    assert.equal(await b.withShop('s1', async (tx) => [await tx.getSession('v1'), await tx.queue(), await tx.takeHeld('v2')]),
      [session('s1', 'v1', 'a1'), [{ visitor: 'v2', shop: 's1', enqueuedAt: 5 }], [{ at: 5, xml: '<held/>' }]]);
    await b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('openStore: memory:, pglite:memory, unknown url', async () => {
  assert.instance(await openStore('memory:'), MemoryStore);
  const p = await openStore('pglite:memory');
  assert.instance(p, SqlStore);
  await p.close();
  await openStore('mysql://x').then(() => assert.unreachable('should throw'), (e) => assert.match(e.message, /unknown store url/));
});

test('postgres: a sidecar never serves a session another sidecar changed (cache invalidation)', async () => {
  const a = await openStore(postgres.url);
  const b = await openStore(postgres.url);
  const raw = new pg.Client({ connectionString: postgres.url });
  await raw.connect();
  try {
    await b.withShop('cache', (tx) => tx.putSession(session('cache', 'v', 'agent-b0')));
    assert.is((await a.withShop('cache', (tx) => tx.getSession('v')))?.agent, 'agent-b0'); // now cached in A
    // The cache really serves: a change behind the store's back (no version bump) is not seen...
    await raw.query(`UPDATE sessions SET agent = 'sneaky' WHERE shop = 'cache' AND visitor = 'v'`);
    assert.is((await a.withShop('cache', (tx) => tx.getSession('v')))?.agent, 'agent-b0');
    // ...but one by another sidecar is, at A's next withShop.
    await b.withShop('cache', (tx) => tx.putSession(session('cache', 'v', 'agent-b1')));
    assert.is((await a.withShop('cache', (tx) => tx.getSession('v')))?.agent, 'agent-b1');
    await b.withShop('cache', (tx) => tx.deleteSession('v'));
    assert.is(await a.withShop('cache', (tx) => tx.getSession('v')), undefined);
    // A's own writes keep its cache valid, and B sees them.
    await a.withShop('cache', (tx) => tx.putSession(session('cache', 'v', 'agent-a')));
    assert.is((await a.withShop('cache', (tx) => tx.getSession('v')))?.agent, 'agent-a');
    assert.is((await b.withShop('cache', (tx) => tx.getSession('v')))?.agent, 'agent-a');
  } finally {
    await raw.end();
    await a.close();
    await b.close();
  }
});

test('postgres: two sidecars, 200 concurrent withShop: never over capacity, never two sessions per visitor', async () => {
  const sidecars = [await openStore(postgres.url), await openStore(postgres.url)];
  const CAPACITY = 7;
  try {
    const calls = Array.from({ length: 200 }, (_, i) => {
      const shopJid = `conc${i % 2}`;
      const visitor = `v${i % 40}`; // each visitor arrives several times, on both sidecars
      return sidecars[(i >> 1) % 2].withShop(shopJid, async (tx) => {
        const all = await tx.sessions();
        if (all.some((x) => x.visitor === visitor)) return;
        const mine = all.filter((x) => x.agent === 'agent');
        await new Promise((r) => setTimeout(r, Math.random() * 3)); // widen the race window
        if (mine.length < CAPACITY) await tx.putSession(session(shopJid, visitor, 'agent'));
      });
    });
    await Promise.all(calls);
    const all = await sidecars[0].allSessions();
    for (const shopJid of ['conc0', 'conc1']) {
      const ofShop = all.filter((x) => x.shop === shopJid);
      assert.is(ofShop.length, CAPACITY, `${shopJid} filled to capacity, not beyond`);
      assert.is(new Set(ofShop.map((x) => x.visitor)).size, ofShop.length, 'no visitor twice');
    }
  } finally {
    for (const s of sidecars) await s.close();
  }
});

test.run();
