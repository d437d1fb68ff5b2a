// Opening hours and waiting that ends on a real desk and store (memory, PGlite, PostgreSQL), through the gRPC
// handlers with a hand-moved clock: messages left at night reach two agents spread and in order when the shop
// opens, once, also across a restart; a wait past queueMaxWaitSec becomes a left message and is counted; an admin
// closes a left message.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import type { DeskMetrics } from '../../../src/desk/ports.js';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import { findChild, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'hours.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
/** 2024-05-02, a Thursday, as Shanghai's clocks show it (UTC+8). */
const shanghai = (hh: number, mm = 0) => Date.UTC(2024, 4, 2, hh - 8, mm);
const HOURS = {
  timeZone: 'Asia/Shanghai',
  weekly: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [['09:00', '18:00']]])),
};

const backends = new Backends();

function recordingMetrics() {
  const abandoned: [string, string, string, number][] = [];
  const metrics: DeskMetrics = {
    sessionClosed: () => {},
    rated: () => {},
    missedChats: () => {},
    queueAbandoned: (shop, group, reason, waitMs) => abandoned.push([shop, group, reason, waitMs]),
  };
  return { metrics, abandoned };
}

async function world(backend: Backend, o: { hours?: boolean; maxWaitSec?: number; metrics?: DeskMetrics } = {}) {
  const config = parseConfig({
    systemJid: a('admin'),
    timers: { tickSec: 5 },
    shops: [
      {
        jid: SHOP,
        name: 'Shop One',
        language: 'en',
        ...(o.hours === false ? {} : { hours: HOURS }),
        ...(o.maxWaitSec ? { queueMaxWaitSec: o.maxWaitSec } : {}),
        agents: [
          { jid: a('ann'), maxSessions: 2 },
          { jid: a('bob'), maxSessions: 2 },
        ],
      },
    ],
  });
  const w = await deskWorld({ backend, backends, config, clock: shanghai(3), metrics: o.metrics });
  return Object.assign(w, {
    visitorSays: (visitor: string, id: string, text: string) =>
      w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}'>${text}</body></message>`),
  });
}

const text = (m: XmlElement) => textOf(findChild(m, 'body')!);
/** Relayed visitor messages an agent got, as "visitor: text", in the order they arrived. */
const relayedTo = (sent: XmlElement[], agent: string) =>
  sent
    .filter((m) => m.attrs.to === agent && m.attrs.realfrom?.startsWith('v') && findChild(m, 'body')?.attrs.msgType !== '15')
    .map((m) => `${m.attrs.realfrom.split('@')[0]}: ${text(m)}`);

for (const backend of BACKENDS) {
  const t = suite(`left messages [${backend}]`);

  t('left at night, they reach two agents at opening, spread and in order, once; a restart in between changes nothing', async () => {
    const w = await world(backend);
    for (const v of ['v1', 'v2', 'v3', 'v4']) {
      for (const n of [1, 2]) {
        const verdict = await w.visitorSays(v, `${v}-${n}`, `${v} message ${n}`);
        assert.is(verdict.action, Action.ACTION_DROP, 'acked, kept, not relayed');
      }
      w.advance(60_000);
    }
    assert.equal(
      w.desk.view.left(SHOP).map((l) => [l.visitor, l.reason, l.messages.map((m) => m.text)]),
      ['v1', 'v2', 'v3', 'v4'].map((v) => [a(v), 'closed', [`${v} message 1`, `${v} message 2`]]),
    );
    await w.online(a('ann'));
    await w.online(a('bob'));
    await w.tick();
    assert.is(w.desk.view.sessions(SHOP).length, 0, 'still closed at 03:04');

    await w.restart(); // a sidecar restart while they wait: from the journal (and the store's hours)
    assert.equal(w.directory.shop(SHOP)?.hours?.timeZone, 'Asia/Shanghai');
    assert.is(w.desk.view.left(SHOP).length, 4);
    w.takeSent();
    await w.online(a('ann'));
    await w.online(a('bob'));

    w.advance(shanghai(9) - w.now());
    await w.tick();
    w.advance(5000);
    await w.tick();
    w.advance(5000);
    await w.tick(); // both full (2 each) by now; nothing more to hand out
    const sent = w.takeSent();
    const ann = relayedTo(sent, a('ann'));
    const bob = relayedTo(sent, a('bob'));
    assert.equal([ann.length, bob.length], [4, 4], 'two left messages each');
    assert.equal(
      [...ann, ...bob].sort(),
      ['v1', 'v2', 'v3', 'v4'].flatMap((v) => [`${v}: ${v} message 1`, `${v}: ${v} message 2`]).sort(),
      'each once',
    );
    for (const list of [ann, bob])
      for (const v of ['v1', 'v2', 'v3', 'v4']) {
        const mine = list.filter((x) => x.startsWith(`${v}:`));
        if (mine.length) assert.equal(mine, [`${v}: ${v} message 1`, `${v}: ${v} message 2`], 'in order');
      }
    assert.equal(
      w.desk.view
        .sessions(SHOP)
        .map((s) => s.visitor)
        .sort(),
      ['v1', 'v2', 'v3', 'v4'].map(a),
    );
    assert.is(w.desk.view.left(SHOP).length, 0);
    assert.equal(w.desk.view.counts(SHOP).kept, 0, 'released and acknowledged');
    await w.restart();
    w.advance(5000);
    await w.tick();
    assert.equal(relayedTo(w.takeSent(), a('ann')), [], 'nothing twice after another restart');
  });

  t('a wait past queueMaxWaitSec ends: told, out of the queue, kept as a left message, counted; an admin closes it', async () => {
    const recorded = recordingMetrics();
    const w = await world(backend, { hours: false, maxWaitSec: 120, metrics: recorded.metrics });
    w.advance(shanghai(10) - w.now());
    const verdict = await w.visitorSays('v1', 'q1', 'anyone?');
    assert.is(verdict.action, Action.ACTION_DROP, 'nobody online: it waits');
    assert.equal(
      w.desk.view.queue(SHOP).map((q) => q.visitor),
      [a('v1')],
    );
    w.advance(120_000);
    await w.tick();
    const told = w.takeSent().filter((m) => m.attrs.to === a('v1'));
    assert.equal(told.map(text), [
      'Sorry, our agents are still busy. Your message has been kept and an agent will reply as soon as possible; you may also come back later.',
    ]);
    assert.equal(w.desk.view.queue(SHOP), []);
    assert.equal(
      w.desk.view.left(SHOP).map((l) => [l.visitor, l.reason, l.waitedMs, l.messages.map((m) => m.text)]),
      [[a('v1'), 'timeout', 120_000, ['anyone?']]],
    );
    assert.equal(w.desk.view.abandoned(SHOP), [{ shop: SHOP, group: '', reason: 'timeout', count: 1, avgWaitMs: 120_000 }]);
    assert.equal(recorded.abandoned, [[SHOP, '', 'timeout', 120_000]]);

    await w.restart();
    assert.equal(w.desk.view.abandoned(SHOP), [{ shop: SHOP, group: '', reason: 'timeout', count: 1, avgWaitMs: 120_000 }], 'journaled');
    await w.desk.closeLeftMessage(SHOP, a('v1'));
    assert.equal(w.desk.view.left(SHOP), []);
    await w.online(a('ann'));
    w.advance(5000);
    await w.tick();
    assert.equal(relayedTo(w.takeSent(), a('ann')), [], 'a closed left message reaches nobody');
    await w.desk.closeLeftMessage(SHOP, a('v1')).then(
      () => assert.unreachable('closed twice'),
      (e: Error) => assert.match(e.message, /no left message/),
    );
    assert.equal(recorded.abandoned.length, 1, 'a restart counts nothing again');
  });

  t.run();
}

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
