// Bounds, deadlines and overload on the decision path, on memory, PGlite and PostgreSQL:
// every cap gives the sender a clear resource-constraint and keeps what was accepted; kept
// messages leave in bounded batches and are deleted only once a shim acknowledged them.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Action, SessionEvent_Kind as Kind, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import type { Limits } from '../../../src/domain/shop.js';
import { findChild, parseElement, textOf } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'caps.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

async function world(backend: Backend, limits: Partial<Limits> = {}, extra: Record<string, unknown> = {}) {
  const config = parseConfig({
    systemJid: a('admin'),
    ...extra,
    timers: { stickyTtlSec: 3600 },
    shops: [
      {
        jid: SHOP,
        name: 'Shop',
        welcome: 'Welcome!',
        limits,
        agents: [
          { jid: a('ann'), maxSessions: 5 },
          { jid: a('bob'), maxSessions: 5 },
        ],
      },
    ],
  });
  const w = await deskWorld({ backend, backends, config });
  // Object.assign keeps w's getters (desk, directory): they follow a restart.
  return Object.assign(w, {
    says: (v: string, id: string, text = id) =>
      w.filter(`<message type='consult' from='${a(v)}/web' to='${SHOP}'><body id='${id}'>${text}</body></message>`),
    agentSays: (agent: string, id: string, text: string) =>
      w.filter(`<message type='chat' from='${a(agent)}/pc' to='${SHOP}'><body id='${id}'>${text}</body></message>`),
  });
}

const xml = (b: Uint8Array) => parseElement(Buffer.from(b).toString());
const errorOf = (v: Verdict) => (v.action === Action.ACTION_REJECT ? `${v.error!.condition}/${v.error!.type}` : undefined);
const relayedTo = (v: Verdict) => (v.action === Action.ACTION_REWRITE ? xml(v.stanza).attrs.to : undefined);
const welcomed = (v: Verdict) =>
  v.extra.some((x) => xml(x).attrs.auto_reply === 'true' && textOf(findChild(xml(x), 'body')!) === 'Welcome!');

for (const backend of BACKENDS) {
  const caps = suite(`limits [${backend}]`);

  caps('queue length: one visitor too many is refused with resource-constraint; those waiting keep their place', async () => {
    const w = await world(backend, { queueMax: 2 });
    await w.says('v1', 'a');
    await w.says('v2', 'b');
    const third = await w.says('v3', 'c');
    assert.is(errorOf(third), 'resource-constraint/wait');
    assert.match(third.error!.text, '2 visitors are already waiting');
    assert.is(third.extra.length, 0, 'not kept, so not acked');
    assert.equal(
      w.desk.view.queue(SHOP).map((q) => [q.visitor, q.kept]),
      [
        [a('v1'), 1],
        [a('v2'), 1],
      ],
    );
    assert.is((await w.says('v1', 'a2')).action, Action.ACTION_DROP, 'one already waiting may still write');
  });

  caps('kept messages per visitor: the next one is refused, the kept ones reach the agent in order', async () => {
    const w = await world(backend, { keptPerVisitor: 3 });
    for (const id of ['k1', 'k2', 'k3']) assert.is((await w.says('v1', id)).action, Action.ACTION_DROP);
    const fourth = await w.says('v1', 'k4');
    assert.is(errorOf(fourth), 'resource-constraint/wait');
    assert.match(fourth.error!.text, '3 of your messages');
    w.takeSent();
    await w.online(a('ann'));
    assert.equal(
      w
        .takeSent()
        .filter((m) => m.attrs.to === a('ann'))
        .map((m) => textOf(findChild(m, 'body')!)),
      ['k1', 'k2', 'k3'],
    );
  });

  caps('kept bytes per visitor: a message that would pass the bound is refused; the smaller ones before it stay', async () => {
    const w = await world(backend, { keptBytesPerVisitor: 4096 });
    assert.is((await w.says('v1', 'b1', 'x'.repeat(1500))).action, Action.ACTION_DROP);
    assert.is((await w.says('v1', 'b2', 'x'.repeat(1500))).action, Action.ACTION_DROP);
    const third = await w.says('v1', 'b3', 'x'.repeat(1500));
    assert.is(errorOf(third), 'resource-constraint/wait');
    assert.match(third.error!.text, 'would exceed 4096 bytes');
    assert.equal(
      w.desk.view.queue(SHOP).map((q) => q.kept),
      [2],
    );
  });

  caps('history per session: a transfer replays only the newest ones', async () => {
    const w = await world(backend, { historyPerSession: 3 });
    await w.online(a('ann'));
    await w.online(a('bob'));
    for (let i = 1; i <= 5; i++) await w.says('v1', `h${i}`);
    const moved = await w.agentSays('ann', 't', '/transfer bob');
    const replayed = moved.extra.map(xml).filter((m) => m.attrs.to === a('bob') && findChild(m, 'delay'));
    assert.equal(
      replayed.map((m) => textOf(findChild(m, 'body')!)),
      ['h3', 'h4', 'h5'],
    );
  });

  caps('sticky hints: the oldest is forgotten beyond the cap', async () => {
    const w = await world(backend, { stickyMax: 2 });
    await w.online(a('ann'));
    for (const v of ['v1', 'v2', 'v3']) {
      await w.says(v, `${v}-1`);
      await w.desk.closeSession(SHOP, a(v), 'admin');
    }
    assert.equal(
      ['v1', 'v2', 'v3'].map((v) => w.desk.view.stickyAgent(SHOP, a(v), w.now())),
      [undefined, a('ann'), a('ann')],
    );
    await w.restart();
    assert.equal(
      ['v1', 'v2', 'v3'].map((v) => w.desk.view.stickyAgent(SHOP, a(v), w.now())),
      [undefined, a('ann'), a('ann')],
      'the same after a restart',
    );
  });

  caps('kept messages leave in bounded batches, each deleted only once a shim acknowledged it', async () => {
    const w = await world(backend, { keptPerVisitor: 200 });
    for (let i = 0; i < 120; i++) await w.says('v1', `m${i}`);
    w.takeSent();
    w.outbox.hold(); // the shim does not acknowledge yet
    await w.event(Kind.PRESENCE_SET, `${a('ann')}/pc`); // without waiting for the releases
    await w.outbox.whenHeld(); // the first batch is out, unacknowledged
    assert.is(w.outbox.waiting, 1, 'one batch at a time: the next waits for this one to be acknowledged');
    assert.equal(w.desk.view.queue(SHOP), [], 'v1 is served');
    assert.is(w.desk.view.counts(SHOP).kept, 120, 'nothing deleted before an acknowledgement');
    w.outbox.crash(); // the sidecar dies before any acknowledgement...
    await w.restart(); // ...and the one after it still has all 120
    assert.is(w.desk.view.counts(SHOP).kept, 120);
    await w.online(a('ann'));
    await w.tick(); // the restarted sidecar resumes the release on its timer
    assert.equal(w.outbox.batches.slice(-3), [50, 50, 20]);
    const toAnn = w.takeSent().filter((m) => m.attrs.to === a('ann') && m.attrs.realfrom === a('v1'));
    const texts = toAnn.map((m) => textOf(findChild(m, 'body')!));
    assert.equal(
      texts.slice(-120),
      Array.from({ length: 120 }, (_, i) => `m${i}`),
      'all of them, in order',
    );
    assert.is(w.desk.view.counts(SHOP).kept, 0);
    await w.restart();
    assert.is(w.desk.view.counts(SHOP).kept, 0, 'and deleted durably');
    const next = await w.says('v1', 'after');
    assert.is(relayedTo(next), a('ann'), 'later messages go straight to the agent');
  });

  caps('a message that arrives while kept ones are still being released waits behind them', async () => {
    const w = await world(backend);
    await w.says('v1', 'first');
    w.outbox.hold();
    await w.event(Kind.PRESENCE_SET, `${a('ann')}/pc`);
    await w.outbox.whenHeld(); // "first" is on its way, unacknowledged
    const during = await w.says('v1', 'second');
    assert.is(during.action, Action.ACTION_DROP, 'kept, not relayed ahead of "first"');
    assert.equal(
      during.extra.map((x) => xml(x).attrs.type),
      ['mstat'],
    );
    w.outbox.release();
    await w.desk.settled();
    const order = w
      .takeSent()
      .filter((m) => m.attrs.to === a('ann'))
      .map((m) => textOf(findChild(m, 'body')!));
    assert.equal(order, ['first', 'second']);
  });

  caps('a session is not closed while its kept messages are still on their way: nothing the visitor was acked is dropped', async () => {
    const w = await world(backend);
    await w.says('v1', 'c1', 'waiting');
    w.outbox.hold();
    await w.event(Kind.PRESENCE_SET, `${a('ann')}/pc`);
    await w.outbox.whenHeld(); // "waiting" is on its way, unacknowledged
    const early = await w.agentSays('ann', 'c2', '/close');
    assert.is(errorOf(early), 'resource-constraint/wait');
    assert.match(early.error!.text, 'still on their way');
    w.advance(3600_000); // idle for an hour: the timer does not close it either
    await w.desk.tick();
    assert.is(w.desk.view.sessions(SHOP).length, 1);
    w.outbox.release();
    await w.desk.settled();
    assert.ok(w.takeSent().some((m) => m.attrs.to === a('ann') && textOf(findChild(m, 'body')!) === 'waiting'));
    assert.is((await w.agentSays('ann', 'c3', '/close')).action, Action.ACTION_DROP, 'closed once released');
  });

  caps('a stanza past its deadline changes nothing; the next one opens the session with the welcome', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    const late = await w.filter(
      `<message type='consult' from='${a('v1')}/web' to='${SHOP}'><body id='l1'>hi</body></message>`,
      w.now() - 1,
    );
    assert.is(errorOf(late), 'resource-constraint/wait');
    assert.is(w.desk.view.sessions(SHOP).length, 0, 'no phantom session');
    const next = await w.says('v1', 'l2');
    assert.is(relayedTo(next), a('ann'));
    assert.ok(welcomed(next), 'the welcome comes with the session that really opens');
  });

  caps('overload: past maxPendingDecisions, senders get a quick resource-constraint; nothing accepted is lost', async () => {
    const w = await world(backend, {}, { maxPendingDecisions: 5 });
    await w.online(a('ann'));
    // All 30 arrive before the first write: the first 5 wait for it, the 25 after them find the backlog full.
    const verdicts = await Promise.all(Array.from({ length: 30 }, (_, i) => w.says(`o${i % 3}`, `o${i}`)));
    const refused = verdicts.filter((v) => errorOf(v) === 'resource-constraint/wait');
    const relayed = verdicts.filter((v) => relayedTo(v) === a('ann'));
    assert.ok(refused.length > 0, 'some are refused');
    assert.is(refused.length + relayed.length, 30);
    assert.equal(
      verdicts.map((v) => (relayedTo(v) ? 'relayed' : errorOf(v))),
      [...Array(5).fill('relayed'), ...Array(25).fill('resource-constraint/wait')],
      'exactly maxPendingDecisions accepted, in arrival order',
    );
    assert.match(refused[0].error!.text, 'overloaded');
    const acknowledged = new Set(verdicts.flatMap((v, i) => (relayedTo(v) ? [a(`o${i % 3}`)] : [])));
    assert.equal([...acknowledged].sort(), [a('o0'), a('o1'), a('o2')]);
    await w.desk.settled();
    assert.is(relayedTo(await w.says('o0', 'later')), a('ann'), 'the backlog written: accepted again');
    await w.restart();
    assert.equal(
      w.desk.view
        .sessions(SHOP)
        .map((s) => s.visitor)
        .sort(),
      [...acknowledged].sort(),
      'every acknowledged session survives',
    );
  });

  caps.run();
}

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
