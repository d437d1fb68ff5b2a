// Opening hours, left messages and waiting that ends: the pure decisions over a ShopState with a hand-made context
// and a hand-moved clock, and the schedule math (src/domain/hours.ts) in several zones and across DST changes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { type OpeningHours, isOpenAt, nextOpening } from '../../../src/domain/hours.js';
import { NS_LEFT } from '../../../src/routing/left.js';
import { apply, type Change, ShopState, type Undo } from '../../../src/routing/state.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { fromAgent } from '../../../src/routing/agent.js';
import { findChild, parseElement, serialize, type XmlElement } from '../../../src/xmpp/xml.js';
import { body, handDecisions, parsed, to } from '../../support/routing.js';

const SHOP = 'shop_1@d.test';
const ANN = 'ann@d.test';
const BOB = 'bob@d.test';
const v = (n: number) => `v${n}@d.test`;
const WEEKDAYS_9_TO_6 = Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [['09:00', '18:00']]]));
const SHANGHAI = { timeZone: 'Asia/Shanghai', weekly: WEEKDAYS_9_TO_6 };
/** 2024-05-02 (a Thursday) as Shanghai's clocks show it: UTC+8 all year. */
const shanghai = (hh: number, mm = 0, day = 2) => Date.UTC(2024, 4, day, hh - 8, mm);
const MIN = 60_000;

function setup(o: { hours?: unknown; maxWaitSec?: number; maxSessions?: Record<string, number>; limits?: object } = {}) {
  const config = parseConfig({
    shops: [
      {
        jid: SHOP,
        name: 'S',
        language: 'en',
        agents: [],
        limits: o.limits ?? {},
        ...(o.hours ? { hours: o.hours } : {}),
        ...(o.maxWaitSec !== undefined ? { queueMaxWaitSec: o.maxWaitSec } : {}),
      },
    ],
  });
  const bench = handDecisions({
    config,
    members: { [ANN]: o.maxSessions?.[ANN] ?? 5, [BOB]: o.maxSessions?.[BOB] ?? 5 },
    now: shanghai(3), // 03:00 on a Thursday: closed
  });
  const { decide } = bench;
  const visitorSays = (visitor: string, text: string, id: string) => {
    const stanza = parseElement(`<message type='consult' from='${visitor}/web' to='${SHOP}'><body id='${id}'>${text}</body></message>`);
    const d = decide((c, w) => fromVisitor(c, w, stanza, visitor, 'consult'));
    return { d, out: parsed(d.extra) };
  };
  return { ...bench, visitorSays };
}

const leftChild = (m: XmlElement) => m.children.find((c): c is XmlElement => typeof c !== 'string' && c.name === 'left')?.attrs;
const keptTexts = (st: ShopState, visitor: string) => (st.kept.get(visitor) ?? []).map((k) => body(parseElement(k.xml)));

const t = suite('decisions: opening hours and left messages');

t('closed: the visitor is acked, told when the shop opens (in its zone), and the message is kept as a left message', () => {
  const s = setup({ hours: SHANGHAI });
  const { d, out } = s.visitorSays(v(1), 'is my parcel lost?', 'm1');
  assert.is(d.action, 'drop', 'not relayed to anyone');
  const [ack, closed] = out;
  assert.equal([ack.attrs.type, findChild(ack, 'body')?.attrs.id, findChild(ack, 'body')?.attrs.stat], ['mstat', 'm1', 'sent']);
  assert.is(
    body(closed),
    `We are closed right now. Your message has been kept; we open at 2024-05-02 09:00 (Asia/Shanghai) and an agent will reply as soon as we can.`,
  );
  assert.equal(
    [
      closed.attrs.from,
      closed.attrs.to,
      closed.attrs.realfrom,
      closed.attrs.qchatid,
      closed.attrs.auto_reply,
      findChild(closed, 'body')?.attrs.msgType,
    ],
    [SHOP, v(1), SHOP, '5', 'true', '15'],
  );
  assert.equal(leftChild(closed), { xmlns: NS_LEFT, reason: 'closed', opens: String(shanghai(9)), zone: 'Asia/Shanghai' });
  assert.equal(s.st.left.get(v(1)), { at: shanghai(3), reason: 'closed', g: '' });
  assert.equal(keptTexts(s.st, v(1)), ['is my parcel lost?']);
  assert.is(s.st.queue.size, 0, 'no place in the queue');

  // More while closed: acked and kept behind the first, not told again.
  const again = s.visitorSays(v(1), 'order 42', 'm2').out;
  assert.equal(
    again.map((m) => m.attrs.type),
    ['mstat'],
  );
  assert.equal(keptTexts(s.st, v(1)), ['is my parcel lost?', 'order 42']);
  assert.is(s.st.abandoned.size, 0, 'a message left while closed is no abandoned wait');
});

t('a dated exception closes a normal day; a special day opens with its own hours', () => {
  const s = setup({
    hours: {
      ...SHANGHAI,
      exceptions: [
        { date: '2024-05-02', hours: [], note: 'holiday' },
        { date: '2024-05-04', hours: [['10:00', '12:00']] }, // a Saturday
      ],
    },
  });
  s.at(shanghai(11)); // Thursday 11:00, normally open
  const { out } = s.visitorSays(v(1), 'hello', 'm1');
  assert.equal(leftChild(out[1])?.opens, String(shanghai(9, 0, 3)), 'opens on Friday at nine');
  s.at(shanghai(19, 0, 3)); // Friday evening
  const friday = s.visitorSays(v(2), 'hello', 'm2').out;
  assert.equal(leftChild(friday[1])?.opens, String(shanghai(10, 0, 4)), 'the special Saturday at ten');
});

t('a shop without hours is always open: nothing changes', () => {
  const s = setup();
  s.online.add(ANN);
  const { d } = s.visitorSays(v(1), 'hi', 'm1');
  assert.is(d.action, 'rewrite');
  assert.is(s.st.sessions.get(v(1))?.agent, ANN);
});

t('at opening, left messages go out oldest first, one per agent per tick, by strategy and capacity', () => {
  const s = setup({ hours: SHANGHAI, maxSessions: { [ANN]: 2, [BOB]: 1 } });
  for (const n of [1, 2, 3, 4]) {
    s.visitorSays(v(n), `first of v${n}`, `a${n}`);
    s.visitorSays(v(n), `second of v${n}`, `b${n}`);
    s.advance(MIN);
  }
  s.at(shanghai(9));
  s.online.add(ANN); // the first to sign in
  const first = s.timers();
  assert.equal(
    [...s.st.sessions.values()].map((x) => [x.visitor, x.agent]),
    [[v(1), ANN]],
    'one for the first agent, not the night',
  );
  assert.equal(to(first, ANN).map(body), [`The message ${v(1)} left at 2024-05-02 03:00 follows.`]);
  assert.equal(leftChild(to(first, ANN)[0]), { xmlns: NS_LEFT, reason: 'closed', at: String(shanghai(3)) });
  assert.equal(body(to(first, v(1))[0]), 'S', 'the visitor gets the welcome');
  assert.equal(s.released, [v(1)], 'its kept messages go to the agent once durable');
  assert.equal(keptTexts(s.st, v(1)), ['first of v1', 'second of v1'], 'in order');

  s.online.add(BOB);
  s.advance(5000);
  s.timers();
  assert.equal(
    [...s.st.sessions.values()].map((x) => [x.visitor, x.agent]),
    [
      [v(1), ANN],
      [v(2), BOB],
      [v(3), ANN],
    ],
    'least busy first; one each',
  );
  s.advance(5000);
  s.timers();
  assert.is(s.st.sessions.size, 3, 'both are full: v4 waits');
  assert.equal([...s.st.left.keys()], [v(4)]);
  assert.equal(s.released, [v(1), v(2), v(3)]);
});

t('a visitor with a left message who writes while open is routed again, its left messages first', () => {
  const s = setup({ hours: SHANGHAI });
  s.visitorSays(v(1), 'night', 'm1');
  s.at(shanghai(10));
  s.online.add(ANN);
  const { d } = s.visitorSays(v(1), 'morning', 'm2');
  assert.is(d.action, 'drop', 'kept behind the left message');
  assert.is(s.st.sessions.get(v(1))?.agent, ANN);
  assert.equal(keptTexts(s.st, v(1)), ['night', 'morning']);
  assert.equal(s.released, [v(1)]);
  assert.is(s.st.left.size, 0);
});

t('closing time: visitors still waiting become left messages, told when the shop opens again', () => {
  const s = setup({ hours: SHANGHAI, maxSessions: { [ANN]: 1 } });
  s.at(shanghai(17, 50));
  s.online.add(ANN);
  s.visitorSays(v(1), 'served', 'm1');
  s.visitorSays(v(2), 'waits', 'm2');
  assert.equal([...s.st.queue.keys()], [v(2)]);
  s.at(shanghai(18));
  const out = s.timers();
  assert.is(s.st.queue.size, 0);
  assert.equal(s.st.left.get(v(2)), { at: shanghai(18), reason: 'closed', g: '', waitedMs: 10 * MIN });
  assert.equal(leftChild(to(out, v(2))[0])?.opens, String(shanghai(9, 0, 3)));
  assert.equal(s.st.abandoned.get('closed\n'), { count: 1, waitMs: 10 * MIN });
});

t('past queueMaxWaitSec: the visitor is told, leaves the queue, its messages become a left message, counted', () => {
  const s = setup({ maxWaitSec: 300, maxSessions: { [ANN]: 1 } });
  s.online.add(ANN);
  s.visitorSays(v(1), 'served', 'm1');
  s.visitorSays(v(2), 'one', 'm2');
  s.advance(MIN);
  s.visitorSays(v(2), 'two', 'm3');
  s.advance(4 * MIN - 1);
  s.timers();
  assert.ok(s.st.queue.has(v(2)), 'not yet');
  s.advance(1);
  const out = s.timers();
  assert.equal(to(out, v(2)).map(body), [
    'Sorry, our agents are still busy. Your message has been kept and an agent will reply as soon as possible; you may also come back later.',
  ]);
  assert.equal(leftChild(to(out, v(2))[0]), { xmlns: NS_LEFT, reason: 'timeout' });
  assert.is(s.st.queue.has(v(2)), false);
  assert.equal(s.st.left.get(v(2))?.reason, 'timeout');
  assert.equal(keptTexts(s.st, v(2)), ['one', 'two'], 'nothing accepted is dropped');
  assert.equal(s.st.abandoned.get('timeout\n'), { count: 1, waitMs: 5 * MIN });
  // In band: an agent's /sessions shows the shop's left messages and abandoned waits.
  const ask = parseElement(`<message type='chat' from='${ANN}/pc' to='${SHOP}'><body id='s1'>/sessions</body></message>`);
  const info = s.decide((c, w) => fromAgent(c, w, ask, ANN, 'chat')).extra.map((x) => findChild(parseElement(serialize(x)), 'info'))[1];
  assert.equal([info?.attrs.left, info?.attrs.abandoned], ['1', '1']);
});

t('a waiting visitor who writes /leave leaves the queue, its messages kept, counted as left', () => {
  const s = setup({ maxSessions: { [ANN]: 1 } });
  s.online.add(ANN);
  s.visitorSays(v(1), 'served', 'm1');
  s.visitorSays(v(2), 'one', 'm2');
  s.advance(2 * MIN);
  const { d, out } = s.visitorSays(v(2), '退出排队', 'm3');
  assert.is(d.action, 'drop');
  assert.equal(out[0].attrs.type, 'mstat');
  assert.is(body(out[1]), 'You left the queue. Your message has been kept and an agent will reply as soon as possible.');
  assert.equal(keptTexts(s.st, v(2)), ['one'], 'the word itself is not kept');
  assert.equal(s.st.abandoned.get('left\n'), { count: 1, waitMs: 2 * MIN });
  // While open, a left message goes out when an agent has room (after the queue).
  s.online.add(BOB);
  s.timers();
  assert.is(s.st.sessions.get(v(2))?.agent, BOB);
  // A session's "/leave" is an ordinary message.
  assert.is(s.visitorSays(v(1), '/leave', 'm4').d.action, 'rewrite');
});

t('left messages are bounded like waiting visitors: queueMax counts them, keptPerVisitor bounds each', () => {
  const s = setup({ hours: SHANGHAI, limits: { queueMax: 2, keptPerVisitor: 2 } });
  s.visitorSays(v(1), 'a', 'm1');
  s.visitorSays(v(1), 'b', 'm2');
  const third = s.visitorSays(v(1), 'c', 'm3').d;
  assert.equal(third.action === 'reject' && third.error.condition, 'resource-constraint');
  s.visitorSays(v(2), 'a', 'm4');
  const full = s.visitorSays(v(3), 'a', 'm5').d;
  assert.equal(full.action === 'reject' && [full.error.condition, full.error.text], [
    'resource-constraint',
    `2 visitors are already waiting for ${SHOP}; please write again later`,
  ]);
  assert.equal(keptTexts(s.st, v(1)), ['a', 'b']);
});

t('journal replay and a snapshot give the same state; undoing every change gives the empty state back', () => {
  const s = setup({ hours: SHANGHAI, maxWaitSec: 60, maxSessions: { [ANN]: 1 } });
  s.visitorSays(v(1), 'night', 'm1');
  s.visitorSays(v(2), 'night too', 'm2');
  s.at(shanghai(9));
  s.online.add(ANN);
  s.timers(); // v1 to ann
  s.visitorSays(v(3), 'morning', 'm3'); // waits
  s.advance(MIN);
  s.timers(); // v3 times out
  s.visitorSays(v(4), 'x', 'm4');
  s.visitorSays(v(4), '/leave', 'm5');
  const json: Change[] = JSON.parse(JSON.stringify(s.journal));
  const replayed = new ShopState(SHOP, s.st.limits);
  const undos: Undo[] = json.map((c) => apply(replayed, c));
  assert.equal(replayed.snapshotParts(), s.st.snapshotParts());
  assert.equal([...replayed.left], [...s.st.left]);
  assert.equal([...replayed.abandoned], [...s.st.abandoned]);
  assert.equal([...s.st.left.keys()], [v(2), v(3), v(4)]);
  const loaded = ShopState.fromParts(SHOP, s.st.limits, s.st.snapshotParts());
  assert.equal([...loaded.left], [...s.st.left]);
  assert.equal([...loaded.abandoned], [...s.st.abandoned]);
  assert.equal(loaded.snapshotParts(), s.st.snapshotParts());
  for (let i = undos.length - 1; i >= 0; i--) undos[i]();
  assert.equal(replayed.snapshotParts(), new ShopState(SHOP, s.st.limits).snapshotParts());
});

const h = suite('schedule math: zones and DST');
const week = (timeZone: string, spans: [string, string][], days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']): OpeningHours => ({
  timeZone,
  weekly: Object.fromEntries(days.map((d) => [d, spans])),
  exceptions: [],
});

h('the same local opening is a different instant in each zone', () => {
  const at = Date.UTC(2024, 0, 10, 0, 0); // a Wednesday, 00:00 UTC
  assert.is(nextOpening(week('Asia/Shanghai', [['09:00', '18:00']]), at), Date.UTC(2024, 0, 10, 1, 0));
  assert.is(nextOpening(week('Europe/Berlin', [['09:00', '18:00']]), at), Date.UTC(2024, 0, 10, 8, 0));
  assert.is(nextOpening(week('America/New_York', [['09:00', '18:00']]), at), Date.UTC(2024, 0, 10, 14, 0));
  assert.is(nextOpening(week('Asia/Kolkata', [['09:00', '18:00']]), at), Date.UTC(2024, 0, 10, 3, 30));
});

h('across a DST change the local time stays: Berlin opens at 09:00 CET, then at 09:00 CEST', () => {
  const hours = week('Europe/Berlin', [['09:00', '17:00']]);
  const saturday = Date.UTC(2024, 2, 30, 17, 0); // closed, the evening before the change (2024-03-31)
  assert.is(nextOpening(hours, saturday), Date.UTC(2024, 2, 31, 7, 0), 'Sunday 09:00 CEST = 07:00 UTC');
  assert.is(nextOpening(hours, Date.UTC(2024, 2, 29, 17, 0)), Date.UTC(2024, 2, 30, 8, 0), 'Saturday 09:00 CET = 08:00 UTC');
  assert.is(isOpenAt(hours, Date.UTC(2024, 2, 31, 7, 30)), true);
  assert.is(isOpenAt(hours, Date.UTC(2024, 2, 31, 6, 30)), false, '08:30 local on the day of the change');
});

h('an opening inside the spring-forward gap opens when the clocks jump past it; a repeated hour counts once', () => {
  // New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
  const gap = week('America/New_York', [['02:30', '05:00']], ['sun']);
  assert.is(nextOpening(gap, Date.UTC(2024, 2, 10, 5, 0)), Date.UTC(2024, 2, 10, 7, 0));
  // 2024-11-03: 02:00 EDT goes back to 01:00 EST; 01:30 happens at 05:30 and 06:30 UTC: the first one opens.
  const repeated = week('America/New_York', [['01:30', '05:00']], ['sun']);
  assert.is(nextOpening(repeated, Date.UTC(2024, 10, 3, 4, 0)), Date.UTC(2024, 10, 3, 5, 30));
});

h('a span to 24:00 and one from 00:00 join across midnight; a schedule never open has no next opening', () => {
  const night: OpeningHours = { timeZone: 'UTC', weekly: { mon: [['20:00', '24:00']], tue: [['00:00', '06:00']] }, exceptions: [] };
  const monday = Date.UTC(2024, 0, 8); // a Monday
  assert.is(isOpenAt(night, monday + 23.5 * 3600_000), true);
  assert.is(isOpenAt(night, monday + 25 * 3600_000), true);
  assert.is(isOpenAt(night, monday + 30 * 3600_000), false);
  assert.is(nextOpening(night, monday), monday + 20 * 3600_000);
  assert.is(nextOpening({ timeZone: 'UTC', weekly: {}, exceptions: [] }, monday), undefined);
});

h('the config refuses an unknown zone, a bad time and a span that ends before it starts, naming the field', () => {
  const problem = (hours: unknown) => {
    try {
      parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [], hours }] });
      return '';
    } catch (e) {
      return (e as Error).message;
    }
  };
  assert.match(problem({ timeZone: 'Mars/Olympus' }), /^config: shops\[0\]\.hours\.timeZone must be an IANA time zone name/);
  assert.match(
    problem({ timeZone: 'UTC', weekly: { mon: [['9:00', '18:00']] } }),
    /shops\[0\]\.hours\.weekly\.mon\[0\]\[0\] must be a time HH:MM/,
  );
  assert.match(
    problem({ timeZone: 'UTC', weekly: { mon: [['18:00', '09:00']] } }),
    /shops\[0\]\.hours\.weekly\.mon\[0\] must end after it starts/,
  );
  assert.match(
    problem({ timeZone: 'UTC', exceptions: [{ date: '2024-02-30' }] }),
    /shops\[0\]\.hours\.exceptions\[0\]\.date must be a date YYYY-MM-DD/,
  );
  assert.match(
    problem({ timeZone: 'UTC', weekly: { tues: [] } }),
    /shops\[0\]\.hours\.weekly\.tues is not a known key \(did you mean tue\?\)/,
  );
  assert.is(problem({ timeZone: 'Asia/Shanghai', weekly: { mon: [['09:00', '24:00']] } }), '');
});

t.run();
h.run();
