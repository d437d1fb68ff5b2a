// Two sidecars (two routers, two stores) on one real PostgreSQL, as behind an ejabberd
// cluster: concurrent first messages never double-assign a visitor or overbook an agent.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../src/config.js';
import { Directory, seedStore } from '../src/directory.js';
import { SessionEvent_Kind as Kind } from '../src/gen/consult/v1/filter.js';
import { ConsultRouter } from '../src/router.js';
import { openStore } from '../src/sql-store.js';
import type { Store } from '../src/store.js';
import { startPostgres, type Postgres } from './support/postgres.js';

const D = 'cluster.test';
const SHOP = `shop_1@${D}`;
const config = parseConfig({
  shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `ann@${D}`, maxSessions: 3 }, { jid: `bob@${D}`, maxSessions: 2 }] }],
});

interface Ctx { pg: Postgres; stores: Store[]; routers: ConsultRouter[] }
const cluster = suite<Ctx>('two sidecars on one PostgreSQL');

cluster.before(async (ctx) => {
  ctx.pg = await startPostgres();
  ctx.stores = [await openStore(ctx.pg.url), await openStore(ctx.pg.url)];
  await seedStore(ctx.stores[0], config);
  ctx.routers = [];
  for (const [i, store] of ctx.stores.entries()) {
    const directory = new Directory(store);
    await directory.reload();
    ctx.routers.push(new ConsultRouter({ config, store, directory, send: () => {} }));
    // Each ejabberd node reports the agents connected to it.
    const agent = i === 0 ? 'ann' : 'bob';
    await ctx.routers[i].handleEvent({ kind: Kind.PRESENCE_SET, jid: `${agent}@${D}/pc`, show: '', priority: 0, status: '' }, `node${i}`);
  }
});

cluster.after(async (ctx) => {
  for (const s of ctx.stores ?? []) await s.close();
  await ctx.pg?.stop();
});

cluster('40 visitors, each sending twice through both sidecars at once: 5 sessions, capacity kept, no visitor twice', async ({ routers, stores }) => {
  const say = (r: ConsultRouter, v: number, n: number) =>
    r.decide(`<message type='consult' from='v${v}@${D}/web' to='${SHOP}'><body id='m${v}-${n}'>hello</body></message>`);
  const verdicts = await Promise.all(Array.from({ length: 40 }, (_, v) => [say(routers[0], v, 1), say(routers[1], v, 2)]).flat());
  const sessions = await stores[0].allSessions();
  assert.is(sessions.length, 5, 'ann 3 + bob 2');
  assert.is(sessions.filter((s) => s.agent === `ann@${D}`).length, 3);
  assert.is(sessions.filter((s) => s.agent === `bob@${D}`).length, 2);
  assert.is(new Set(sessions.map((s) => s.visitor)).size, 5, 'no visitor has two sessions');
  const queue = await stores[1].withShop(SHOP, (tx) => tx.queue());
  assert.is(queue.length, 35);
  assert.is(new Set(queue.map((e) => e.visitor)).size, 35);
  const relayed = verdicts.filter((v) => v.action === 'rewrite');
  for (const s of sessions) {
    const mine = relayed.filter((v) => v.action === 'rewrite' && v.stanza.attrs.realfrom === s.visitor);
    assert.ok(mine.every((v) => v.action === 'rewrite' && v.stanza.attrs.to === s.agent), `every message of ${s.visitor} went to ${s.agent}`);
  }
});

cluster.run();
