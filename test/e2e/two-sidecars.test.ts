// Two sidecar processes on one real PostgreSQL, as behind an ejabberd cluster: each shop is
// decided by one of them (the one holding its lease), the other refuses it with a clear
// error; when the owner dies the other takes the shop over with every session, queue entry and
// kept message it left; when the owner stops cleanly it hands its shops over at once.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { Action, SessionEvent_Kind as Kind, StanzaFilterClient, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { preferredOwner } from '../../src/cluster/leases.js';
import { pgDriver } from '../../src/storage/driver.js';
import { parseElement } from '../../src/xmpp/xml.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { startSidecar, writeConfig, type SidecarProcess } from '../support/sidecar.js';
import { setUpSuite } from '../support/suite.js';

const D = 'cluster.test';
const SHOP = `shop_1@${D}`;
const SHOP2 = `shop_2@${D}`;

interface Ctx {
  pg: Postgres;
  sidecars: SidecarProcess[];
}
const cluster = suite<Ctx>('two sidecars on one PostgreSQL');

setUpSuite(cluster, async (ctx) => {
  ctx.pg = await startPostgres();
  ctx.sidecars = [];
});

cluster.after(async (ctx) => {
  for (const s of ctx.sidecars ?? []) await s.kill('SIGKILL');
  await ctx.pg?.stop();
});

const client = (port: number) => new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
/**
 * What an ejabberd node's shim keeps open to each sidecar: a FilterStream that said hello. A sidecar takes its share
 * of the shops from the other only once the shims reach it (or after waiting 10 s for them).
 */
const shimStream = (c: StanzaFilterClient, node: string) => {
  const stream = c.filterStream();
  stream.on('error', () => {}); // ends with the sidecar
  stream.write({ hello: { node, hosts: [D], shimVersion: 'test', clusterNodes: [node], features: [] } });
  return stream;
};
const filter = (c: StanzaFilterClient, xml: string) =>
  new Promise<Verdict>((resolve, reject) =>
    c.filter({ seq: '1', hook: 1, host: D, stanza: Buffer.from(xml), deadlineMs: String(Date.now() + 5000) }, (e, v) =>
      e ? reject(e) : resolve(v!),
    ),
  );
const online = (c: StanzaFilterClient, agent: string) =>
  new Promise<void>((resolve, reject) =>
    c.notify({ kind: Kind.PRESENCE_SET, jid: `${agent}@${D}/pc`, show: '', priority: 0, status: '' }, (e) => (e ? reject(e) : resolve())),
  );
const says = (c: StanzaFilterClient, v: number, id: string, shop = SHOP) =>
  filter(c, `<message type='consult' from='v${v}@${D}/web' to='${shop}'><body id='${id}'>hello ${id}</body></message>`);
const refusedAsNotOwner = (v: Verdict) =>
  v.action === Action.ACTION_REJECT && /decided by another consult sidecar/.test(v.error?.text ?? '');

const agents = [
  { jid: `ann@${D}`, maxSessions: 3 },
  { jid: `bob@${D}`, maxSessions: 2 },
];
/** Two sidecar ids such that `first` is the preferred owner of SHOP (and so the other one of SHOP2, if it can be). */
function ids(): [string, string] {
  for (let i = 0; ; i++) {
    const pair: [string, string] = [`one-${i}`, `two-${i}`];
    if (preferredOwner(SHOP, pair) === pair[0] && preferredOwner(SHOP2, pair) === pair[1]) return pair;
  }
}
const configOf = (pg: Postgres, sidecarId: string, shops: string[]) =>
  writeConfig({ sidecarId, store: pg.url, shops: shops.map((jid) => ({ jid, name: jid, agents })) });
const agentOf = (v: Verdict) => (v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined);

cluster('a shop is decided by its owner alone; the other takes over with every session and queued visitor when it dies', async (ctx) => {
  const [id1, id2] = ids();
  const [p1, p2] = [await freePort(), await freePort()];
  const first = startSidecar(configOf(ctx.pg, id1, [SHOP]), p1);
  ctx.sidecars.push(first);
  await first.waitForLog('sidecar listening');
  const second = startSidecar(configOf(ctx.pg, id2, [SHOP]), p2);
  ctx.sidecars.push(second);
  await second.waitForLog('sidecar listening');
  assert.not.ok(
    second.lines.some((l) => l.includes('took the lease')),
    'the shop belongs to the first: the second only stands by for it',
  );

  const [c1, c2] = [client(p1), client(p2)];
  for (const c of [c1, c2]) {
    await online(c, 'ann');
    await online(c, 'bob');
  }
  assert.ok(refusedAsNotOwner(await says(c2, 99, 'x')), 'the standby refuses the shop it does not own, with a clear error');
  const first40 = await Promise.all(Array.from({ length: 40 }, (_, v) => says(c1, v, `a${v}`)));
  const served = new Map(first40.map((v, i) => [i, agentOf(v)]).filter(([, a]) => a) as [number, string][]);
  assert.is(served.size, 5, 'ann 3 + bob 2');
  assert.is(first40.filter((v) => v.action === Action.ACTION_DROP).length, 35, 'the rest wait, their messages kept');
  c1.close();

  const since = second.lines.length;
  await first.kill('SIGKILL'); // no clean release: the standby takes over when the lease expires
  await second.waitForLog('took the lease of a shop', since, 20_000);
  for (const [v, agent] of served) {
    const again = await says(c2, v, `b${v}`);
    assert.is(agentOf(again), agent, `v${v} stays with ${agent}`);
    assert.not.ok(
      again.extra.some((x) => x.toString().includes("auto_reply='true'")),
      `v${v} is not welcomed twice`,
    );
  }
  const waiting = await says(c2, 39, 'b39');
  assert.is(waiting.action, Action.ACTION_DROP, 'a queued visitor still waits (capacity is full)');
  c2.close();
  await second.kill('SIGTERM');
  ctx.sidecars.length = 0;
});

cluster('two shops spread over two sidecars; a clean stop hands its shop over at once', async (ctx) => {
  const db = await pgDriver(ctx.pg.url);
  await db.query('TRUNCATE shops, memberships, agents, resources, journal, snapshot_parts, shop_lease, sidecars');
  await db.close();
  const [id1, id2] = ids();
  const [p1, p2] = [await freePort(), await freePort()];
  const first = startSidecar(configOf(ctx.pg, id1, [SHOP, SHOP2]), p1);
  ctx.sidecars.push(first);
  await first.waitForLog('sidecar listening');
  const c1 = client(p1);
  const s1 = shimStream(c1, 'n1@test');
  const second = startSidecar(configOf(ctx.pg, id2, [SHOP, SHOP2]), p2);
  ctx.sidecars.push(second);
  await second.waitForLog('sidecar listening');
  const c2 = client(p2);
  const s2 = shimStream(c2, 'n1@test');
  await second.waitForLog('took the lease of a shop', 0, 20_000); // once the shim reaches it, the first hands SHOP2 over
  await first.waitForLog('handed a shop over');
  for (const c of [c1, c2]) await online(c, 'ann');
  assert.ok(agentOf(await says(c1, 1, 'a1', SHOP)), 'the first decides SHOP');
  assert.ok(refusedAsNotOwner(await says(c1, 2, 'a2', SHOP2)), 'but not SHOP2');
  assert.ok(agentOf(await says(c2, 2, 'a3', SHOP2)), 'the second decides SHOP2');
  assert.ok(refusedAsNotOwner(await says(c2, 1, 'a4', SHOP)), 'but not SHOP');

  const since = second.lines.length;
  await first.kill('SIGTERM'); // hands SHOP over: released, not left to expire
  await second.waitForLog('took the lease of a shop', since, 5_000).catch((e) => {
    throw new Error(`${e.message}\nfirst:\n${first.lines.join('\n')}`);
  });
  const again = await says(c2, 1, 'a5', SHOP);
  assert.is(agentOf(again), `ann@${D}`, 'the session of v1 came along');
  assert.not.ok(again.extra.some((x) => x.toString().includes("auto_reply='true'")));
  for (const s of [s1, s2]) s.cancel();
  c1.close();
  c2.close();
});

cluster.run();
