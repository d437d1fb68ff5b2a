// Two sidecar processes on one real PostgreSQL, as behind an ejabberd cluster: one holds the
// journal lease and decides; the other stands by and, once the first is gone, serves with
// every session, queue entry and kept message it left.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { freePort } from '../scripts/ejabberd-node.js';
import { Action, SessionEvent_Kind as Kind, StanzaFilterClient, type Verdict } from '../src/gen/consult/v1/filter.js';
import { parseElement } from '../src/xmpp/xml.js';
import { startPostgres, type Postgres } from './support/postgres.js';
import { startSidecar, writeConfig, type SidecarProcess } from './support/sidecar.js';

const D = 'cluster.test';
const SHOP = `shop_1@${D}`;

interface Ctx {
  pg: Postgres;
  sidecars: SidecarProcess[];
}
const cluster = suite<Ctx>('two sidecars on one PostgreSQL');

cluster.before(async (ctx) => {
  ctx.pg = await startPostgres();
  ctx.sidecars = [];
});

cluster.after(async (ctx) => {
  for (const s of ctx.sidecars ?? []) await s.kill('SIGKILL');
  await ctx.pg?.stop();
});

const client = (port: number) => new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
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
const says = (c: StanzaFilterClient, v: number, id: string) =>
  filter(c, `<message type='consult' from='v${v}@${D}/web' to='${SHOP}'><body id='${id}'>hello ${id}</body></message>`);
const agentOf = (v: Verdict) => (v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined);

cluster('the standby waits, then takes over with every session and queued visitor; nobody gets a second agent', async (ctx) => {
  const config = writeConfig({
    store: ctx.pg.url,
    shops: [
      {
        jid: SHOP,
        name: 'Shop',
        agents: [
          { jid: `ann@${D}`, maxSessions: 3 },
          { jid: `bob@${D}`, maxSessions: 2 },
        ],
      },
    ],
  });
  const [p1, p2] = [await freePort(), await freePort()];
  const first = startSidecar(config, p1);
  ctx.sidecars.push(first);
  await first.waitForLog('sidecar listening');
  const second = startSidecar(config, p2);
  ctx.sidecars.push(second);
  await second.waitForLog('standing by');
  assert.not.ok(
    second.lines.some((l) => l.includes('sidecar listening')),
    'a standby does not serve',
  );

  const c1 = client(p1);
  await online(c1, 'ann');
  await online(c1, 'bob');
  const first40 = await Promise.all(Array.from({ length: 40 }, (_, v) => says(c1, v, `a${v}`)));
  const served = new Map(first40.map((v, i) => [i, agentOf(v)]).filter(([, a]) => a) as [number, string][]);
  assert.is(served.size, 5, 'ann 3 + bob 2');
  assert.is(first40.filter((v) => v.action === Action.ACTION_DROP).length, 35, 'the rest wait, their messages kept');
  c1.close();

  await first.kill('SIGKILL'); // no clean release: the standby takes over when the lease expires
  await second.waitForLog('sidecar listening', 0, 20_000);
  const c2 = client(p2);
  // Presence is reported again by the shims after a reconnect; sessions and queue come from the journal.
  await online(c2, 'ann');
  await online(c2, 'bob');
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
});

cluster.run();
