// Events out, through the desk on memory and PGlite, to a real HTTP receiver (node:http) by the real adapter
// (src/bot/event-hook.ts): a session's events in order with valid signatures, retries after 500s with the same id,
// decisions that complete while the endpoint hangs, the bound on the outbox, and a restart before delivery that
// sends every event again with the same id.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { eventSignature, postEvent } from '../../../src/bot/event-hook.js';
import { backoffMs, eventDelivery } from '../../../src/desk/event-sender.js';
import { preferredOwner } from '../../../src/cluster/leases.js';
import { parseConfig } from '../../../src/domain/config.js';
import { Metrics } from '../../../src/admin/metrics.js';
import type { EventMetrics } from '../../../src/desk/ports.js';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import { type Backend, Backends, deskWorld, type StoresOptions } from '../../support/desk.js';
import { EventReceiver } from '../../support/event-receiver.js';
import { waitUntil } from '../../support/wait.js';

const D = 'ev.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const SECRET = 'a-webhook-secret-of-the-shop';
const backends = new Backends();

class CountingMetrics implements EventMetrics {
  readonly counts = { delivered: 0, failed: 0, dropped: 0 };
  delivered() {
    this.counts.delivered++;
  }
  failed() {
    this.counts.failed++;
  }
  dropped(_shop: string, n: number) {
    this.counts.dropped += n;
  }
}

async function world(
  backend: Backend,
  { receiver, stop }: { receiver: EventReceiver; stop: (() => void)[] },
  o: { outboxMax?: number; messages?: boolean } = {},
  stores?: StoresOptions,
  eventMetrics?: EventMetrics,
) {
  const config = parseConfig({
    systemJid: a('admin'),
    archive: { ratingWindowSec: 600 },
    events: { url: receiver.url, secret: SECRET, messages: o.messages ?? false, timeoutMs: 5000, retryBaseMs: 10, retryMaxMs: 40 },
    shops: [{ jid: SHOP, name: 'Shop One', limits: { outboxMax: o.outboxMax ?? 10_000 }, agents: [{ jid: a('ann'), maxSessions: 5 }] }],
  });
  const metrics = new CountingMetrics();
  const both: EventMetrics = {
    delivered: (s) => {
      metrics.delivered();
      eventMetrics?.delivered(s);
    },
    failed: (s) => {
      metrics.failed();
      eventMetrics?.failed(s);
    },
    dropped: (s, n) => {
      metrics.dropped(s, n);
      eventMetrics?.dropped(s, n);
    },
  };
  const w = await deskWorld({ backend, backends, config, postEvent, eventMetrics: both, stores });
  stop.push(() => w.desk.sender.close());
  return Object.assign(w, {
    metrics,
    visitorSays: (visitor: string, id: string, text: string) =>
      w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}' msgType='1'>${text}</body></message>`),
    agentSays: (id: string, text: string, realto: string) =>
      w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}' realto='${a(realto)}'><body id='${id}'>${text}</body></message>`),
    outbox: () => w.desk.shops.state(SHOP)?.outbox.size ?? -1,
  });
}

/** Sidecar ids such that the first is the shop's preferred owner: the second takes it only once it is handed over. */
function owners(): [string, string] {
  for (let i = 0; ; i++) {
    const pair: [string, string] = [`one-${i}`, `two-${i}`];
    if (preferredOwner(SHOP, pair) === pair[0]) return pair;
  }
}

const types = (list: { body: { type: string } }[]) => list.map((r) => r.body.type);
const SESSION = ['session.opened', 'session.assigned', 'session.closed', 'session.rated'];

for (const backend of ['memory', 'pglite'] as Backend[]) {
  const t = suite<{ receiver: EventReceiver; stop: (() => void)[] }>(`events out [${backend}]`);
  // A receiver of its own per test; the test's desk stops sending when the test ends.
  t.before.each(async (ctx) => {
    ctx.receiver = new EventReceiver(SECRET);
    await ctx.receiver.start();
    ctx.stop = [];
  });
  t.after.each(async (ctx) => {
    for (const f of ctx.stop) f();
    await ctx.receiver.close();
  });

  t('a session’s events arrive in order, signed, each id once, and leave the outbox', async (ctx) => {
    const { receiver } = ctx;
    const w = await world(backend, ctx, { messages: true });
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello');
    await w.agentSays('r1', 'hi there', 'v1');
    await w.agentSays('c1', '/close', 'v1');
    await w.visitorSays('v1', 'rate1', '5');
    // The last delivery is counted once its `delivered` change is durable, just after the outbox empties in memory.
    await waitUntil(
      'the receiver has every event',
      () => receiver.accepted.length === 6 && w.outbox() === 0 && w.metrics.counts.delivered === 6,
    );
    assert.equal(types(receiver.accepted), ['session.opened', 'session.assigned', 'message', 'message', 'session.closed', 'session.rated']);
    assert.ok(
      receiver.received.every((r) => r.signed),
      'every signature checks',
    );
    const ids = receiver.accepted.map((r) => r.id);
    assert.equal(
      ids,
      [1, 2, 3, 4, 5, 6].map((n) => `${SHOP}/${n}`),
    );
    assert.equal(
      receiver.accepted.map((r) => r.body.id),
      ids,
      'the body names its id too',
    );
    const [opened, , said, answered, closed, rated] = receiver.accepted.map((r) => r.body);
    assert.equal([said.by, said.text, answered.by, answered.text], ['visitor', 'hello', 'agent', 'hi there']);
    assert.equal([closed.agent, closed.reason, rated.score], [a('ann'), 'agent', 5]);
    assert.is(new Set(receiver.accepted.map((r) => r.body.session)).size, 1, 'one session id throughout');
    assert.ok(await w.archive.get(opened.session), 'the session id is its archive record id');
    assert.is(w.metrics.counts.delivered, 6);
  });

  t('500s are retried with backoff, the same id and the same body; order holds', async (ctx) => {
    const { receiver } = ctx;
    const w = await world(backend, ctx);
    receiver.answer = 'fail';
    receiver.failures = 3;
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello');
    await w.agentSays('c1', '/close', 'v1');
    await waitUntil('the events got through', () => receiver.accepted.length === 3 && w.outbox() === 0);
    assert.equal(types(receiver.accepted), SESSION.slice(0, 3));
    const first = receiver.received.filter((r) => r.id === `${SHOP}/1`);
    assert.is(first.length, 4, 'three 500s, then the 2xx');
    assert.is(new Set(first.map((r) => r.raw)).size, 1, 'the same body each time');
    assert.is(w.metrics.counts.failed, 3);
  });

  t('an endpoint that does not answer never holds decisions up; its events follow once it answers', async (ctx) => {
    const { receiver } = ctx;
    const w = await world(backend, ctx);
    receiver.answer = 'hold';
    await w.online(a('ann'));
    for (let i = 1; i <= 4; i++) {
      const v = await w.visitorSays(`v${i}`, `m${i}`, 'hello');
      assert.is(v.action, Action.ACTION_REWRITE, `visitor ${i} is routed while the webhook hangs`);
    }
    for (let i = 1; i <= 4; i++) await w.agentSays(`c${i}`, '/close', `v${i}`);
    await waitUntil('one request held', () => receiver.holding === 1);
    assert.is(w.outbox(), 12, 'every event waits in the outbox');
    assert.is(receiver.received.length, 1, 'one request at a time per shop');
    receiver.release();
    await waitUntil('all delivered', () => receiver.accepted.length === 12 && w.outbox() === 0);
    const perVisitor = (v: string) => types(receiver.accepted.filter((r) => r.body.visitor === a(v)));
    for (let i = 1; i <= 4; i++) assert.equal(perVisitor(`v${i}`), SESSION.slice(0, 3), `v${i}'s events in order`);
    assert.equal(
      receiver.accepted.map((r) => r.body.seq),
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
  });

  t('/metrics shows the outbox depth and the delivered, failed and dropped events', async (ctx) => {
    const { receiver } = ctx;
    const metrics = new Metrics();
    const w = await world(backend, ctx, { outboxMax: 4 }, undefined, metrics.events);
    metrics.watch({ desk: w.desk, directory: w.directory, link: w.link });
    const scrape = async (name: string, outcome?: string) => {
      const text = await metrics.registry.metrics();
      const labels = outcome ? `{shop="${SHOP}",outcome="${outcome}"}` : `{shop="${SHOP}"}`;
      const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
      return line === undefined ? undefined : Number(line.split(' ')[1]);
    };
    receiver.answer = 'fail';
    receiver.failures = 1;
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello'); // 2 events
    await waitUntil('both delivered after one 500', () => w.outbox() === 0);
    receiver.answer = 'hold';
    for (let i = 2; i <= 4; i++) await w.visitorSays(`v${i}`, `m${i}`, 'hello'); // 6 more: 2 dropped
    await waitUntil('one request held', () => receiver.holding === 1);
    assert.is(await scrape('consult_events_outbox'), 4);
    assert.is(await scrape('consult_events_total', 'delivered'), 2);
    assert.is(await scrape('consult_events_total', 'failed'), 1);
    assert.is(await scrape('consult_events_total', 'dropped'), 2);
    receiver.release();
    await waitUntil('the rest delivered', () => w.outbox() === 0);
    assert.is(await scrape('consult_events_outbox'), 0);
  });

  t('a full outbox drops the oldest events and counts them', async (ctx) => {
    const { receiver } = ctx;
    const w = await world(backend, ctx, { outboxMax: 4 });
    receiver.answer = 'hold';
    await w.online(a('ann'));
    for (let i = 1; i <= 3; i++) await w.visitorSays(`v${i}`, `m${i}`, 'hello'); // 6 events
    await waitUntil('the first request held', () => receiver.holding === 1);
    assert.is(w.outbox(), 4);
    assert.is(w.metrics.counts.dropped, 2);
    receiver.release();
    await waitUntil('the rest delivered', () => w.outbox() === 0);
    assert.equal(
      receiver.accepted.map((r) => r.body.seq),
      [1, 3, 4, 5, 6],
      'the one under way when 1 and 2 were dropped arrived; 2 never left',
    );
  });

  t('a restart before delivery: every event is sent again with its id, none missing, the next ones numbered on', async (ctx) => {
    const { receiver } = ctx;
    const w = await world(backend, ctx);
    receiver.answer = 'hold';
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello');
    await w.agentSays('c1', '/close', 'v1');
    await waitUntil('the first request held', () => receiver.holding === 1);
    const heldId = receiver.received[0].id;
    // As a crash: the old sender stops where it is, the request it sent is never answered.
    w.desk.sender.close();
    receiver.dropHeld();
    await w.restart();
    ctx.stop.push(() => w.desk.sender.close());
    receiver.answer = 'ok';
    await w.tick(); // a tick resumes what the journal kept
    await waitUntil('all delivered after the restart', () => w.outbox() === 0 && receiver.accepted.length === 3);
    assert.equal(types(receiver.accepted), SESSION.slice(0, 3));
    assert.is(receiver.accepted[0].id, heldId, 'the event under way at the crash, again under its id');
    await w.visitorSays('v2', 'm2', 'hello');
    await waitUntil('the next session’s events', () => receiver.accepted.length === 5);
    assert.equal(
      receiver.accepted.map((r) => r.body.seq),
      [1, 2, 3, 4, 5],
    );
  });

  t.run();
}

const handOver = suite<{ receiver: EventReceiver; stop: (() => void)[] }>('events out across a hand-over [postgres]');
handOver.before.each(async (ctx) => {
  ctx.receiver = new EventReceiver(SECRET);
  await ctx.receiver.start();
  ctx.stop = [];
});
handOver.after.each(async (ctx) => {
  for (const f of ctx.stop) f();
  await ctx.receiver.close();
});

handOver(
  'the outbox goes with the shop: its next sidecar sends what waits, under the same ids; the old one records nothing',
  async (ctx) => {
    const { receiver } = ctx;
    const [idOne, idTwo] = owners();
    const one = await world('postgres', ctx, {}, { sidecar: idOne });
    receiver.answer = 'hold';
    await one.online(a('ann'));
    await one.visitorSays('v1', 'm1', 'hello');
    await one.agentSays('c1', '/close', 'v1');
    await waitUntil('the first request held', () => receiver.holding === 1);
    await one.ownership.handOverAll(); // a clean shutdown: the state journaled, the lease released
    assert.not.ok(one.desk.shops.owns(SHOP));
    receiver.release(); // answered now, to a sidecar that no longer decides the shop: it records nothing
    const two = await world('postgres', ctx, {}, { sidecar: idTwo, join: true });
    assert.ok(two.desk.shops.owns(SHOP), 'the second took the shop');
    assert.is(two.outbox(), 3, 'every event still waits, the one answered to the old sidecar too');
    await two.tick();
    await waitUntil('all delivered by the new owner', () => two.outbox() === 0 && receiver.accepted.length === 3);
    assert.equal(types(receiver.accepted), SESSION.slice(0, 3));
    assert.equal(
      receiver.received.map((r) => r.body.seq),
      [1, 1, 2, 3],
      'the first again under its id, then the rest, each once',
    );
    assert.is(one.metrics.counts.delivered, 0, 'the old sidecar counted nothing delivered');
  },
);

handOver.run();

const pure = suite('events out: backoff and body');

pure('the backoff doubles from retryBaseMs up to retryMaxMs, scaled by a jitter of 50..100 %', () => {
  const at = (random: number) => [1, 2, 3, 4, 5, 6].map((n) => backoffMs(n, 100, 1000, () => random));
  assert.equal(at(1), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(at(0), [50, 100, 200, 400, 500, 500]);
  assert.is(
    backoffMs(80, 100, 1000, () => 1),
    1000,
    'no overflow far out',
  );
});

pure('an event’s body names its id, shop and number; the signature covers timestamp and body', () => {
  const d = eventDelivery(SHOP, 7, { type: 'session.closed', at: 5, visitor: a('v1'), session: 's1', reason: 'idle' });
  assert.is(d.id, `${SHOP}/7`);
  assert.equal(JSON.parse(d.body), {
    id: `${SHOP}/7`,
    shop: SHOP,
    seq: 7,
    type: 'session.closed',
    at: 5,
    visitor: a('v1'),
    session: 's1',
    reason: 'idle',
  });
  const sig = eventSignature(SECRET, '1000', d.body);
  assert.match(sig, /^sha256=[0-9a-f]{64}$/);
  assert.is.not(eventSignature(SECRET, '1001', d.body), sig, 'another timestamp, another signature');
  assert.is.not(eventSignature(`${SECRET}x`, '1000', d.body), sig, 'another secret, another signature');
});

pure.run();

const teardown = suite('events out: teardown');
teardown.after(() => backends.close());
teardown.run();
