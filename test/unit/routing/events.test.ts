// Webhook events from a decision's changes (src/routing/events.ts) and the outbox they wait in (`emit`, `delivered`
// in src/routing/state.ts): which events each change makes, their numbers, the exact undo, replay and snapshots
// (the same numbers again: the idempotency key survives a crash), and the bound (the oldest dropped).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_LIMITS } from '../../../src/domain/shop.js';
import { Changes } from '../../../src/routing/changes.js';
import { eventsOf } from '../../../src/routing/events.js';
import { apply, type Change, ShopState } from '../../../src/routing/state.js';

const SHOP = 'shop_1@d.test';
const ANN = 'ann@d.test';
const BOB = 'bob@d.test';
const V1 = 'v1@d.test';
const V2 = 'v2@d.test';
const T0 = 1_000_000;

const fresh = (outboxMax = DEFAULT_LIMITS.outboxMax) => new ShopState(SHOP, { ...DEFAULT_LIMITS, outboxMax });
const writer = (st: ShopState, messages = false) => new Changes(st, (s, c) => eventsOf(s, c, { messages }));
const summary = (st: ShopState) =>
  [...st.outbox].map(([seq, e]) => `${seq} ${e.type} ${e.visitor}${e.agent ? ` ${e.agent}` : ''}${e.from ? ` from ${e.from}` : ''}`);
const snapshot = (st: ShopState) => st.snapshotParts().join('');

/** A session served at once, transferred, closed and rated; another visitor waits, then abandons its wait. */
function serviceDay(w: Changes): void {
  w.do({ op: 'open', v: V1, agent: ANN, at: T0 });
  w.do({ op: 'said', v: V1, by: 'visitor', at: T0 + 1, xml: '<message/>', text: 'hello' });
  w.do({ op: 'said', v: V1, by: 'agent', at: T0 + 2, xml: '<message/>', text: 'hi' });
  w.do({ op: 'enqueue', v: V2, at: T0 + 3 });
  w.do({ op: 'keep', v: V2, at: T0 + 3, xml: '<message/>', text: 'anyone?' });
  w.do({ op: 'move', v: V1, agent: BOB, at: T0 + 4, reason: 'billing' });
  w.do({ op: 'close', v: V1, stickyUntil: T0 + 10_000, at: T0 + 5, reason: 'agent', rateUntil: T0 + 60_000 });
  w.do({ op: 'rate', v: V1, score: 5, at: T0 + 6 });
  w.do({ op: 'leave', v: V2, at: T0 + 8_003, reason: 'timeout' });
}

const events = suite('webhook events from changes');

events('each change makes its events, numbered in order, right behind it in the same list', () => {
  const st = fresh();
  const w = writer(st);
  serviceDay(w);
  assert.equal(summary(st), [
    `1 session.opened ${V1}`,
    `2 session.assigned ${V1} ${ANN}`,
    `3 session.opened ${V2}`,
    `4 session.transferred ${V1} ${BOB} from ${ANN}`,
    `5 session.closed ${V1} ${BOB}`,
    `6 session.rated ${V1}`,
    `7 session.abandoned ${V2}`,
  ]);
  assert.equal(
    w.list.map((c) => c.op),
    ['open', 'emit', 'emit', 'said', 'said', 'enqueue', 'emit', 'keep', 'move', 'emit', 'close', 'emit', 'rate', 'emit', 'leave', 'emit'],
  );
  const [opened, , waiting, moved, closed, rated, abandoned] = [...st.outbox.values()];
  assert.is(opened.session, closed.session, 'one session id from open to close');
  assert.is(rated.session, closed.session);
  assert.is(waiting.waiting, true);
  assert.is(moved.reason, 'billing');
  assert.is(closed.reason, 'agent');
  assert.is(rated.score, 5);
  assert.equal([abandoned.reason, abandoned.waitedMs], ['timeout', 8000]);
  assert.ok(st.unarchived.has(closed.session), 'the session id is its archive record id');
});

events('messages only when the hook asks for them: visitor, agent and a waiting visitor’s kept message', () => {
  const st = fresh();
  serviceDay(writer(st, true));
  const messages = [...st.outbox.values()].filter((e) => e.type === 'message');
  assert.equal(
    messages.map((e) => `${e.by}:${e.text}:${e.visitor}`),
    [`visitor:hello:${V1}`, `agent:hi:${V1}`, `visitor:anyone?:${V2}`],
  );
});

events('a revoke is message.revoked naming the message (with messages only); message events carry their body id', () => {
  const st = fresh();
  const w = writer(st, true);
  w.do({ op: 'open', v: V1, agent: ANN, at: T0 });
  w.do({ op: 'said', v: V1, by: 'visitor', at: T0 + 1, xml: '<message/>', text: 'oops', id: 'M1' });
  w.do({ op: 'revoke', v: V1, id: 'M1', by: 'visitor', at: T0 + 2, xml: '<message type="revoke"/>' });
  w.do({ op: 'revoke', v: V2, id: 'X', by: 'visitor', at: T0 + 3 }); // nothing of V2 here: no event
  const [, , said, revoked] = [...st.outbox.values()];
  assert.equal([said.type, said.messageId], ['message', 'M1']);
  assert.equal(revoked, {
    type: 'message.revoked',
    at: T0 + 2,
    visitor: V1,
    session: said.session,
    by: 'visitor',
    messageId: 'M1',
    agent: ANN,
  });
  assert.is(st.outbox.size, 4);
  const quiet = fresh();
  const q = writer(quiet);
  q.do({ op: 'open', v: V1, agent: ANN, at: T0 });
  q.do({ op: 'revoke', v: V1, id: 'M1', by: 'agent', at: T0 + 2 });
  assert.equal(summary(quiet), [`1 session.opened ${V1}`, `2 session.assigned ${V1} ${ANN}`], 'without messages: none');
});

events('a left message outside the queue is message.left; a change that does nothing makes no event', () => {
  const st = fresh();
  const w = writer(st);
  w.do({ op: 'keep', v: V1, at: T0, xml: '<message/>', text: 'closed?' });
  w.do({ op: 'leave', v: V1, at: T0, reason: 'closed' });
  w.do({ op: 'leave', v: V1, at: T0 + 1, reason: 'closed' }); // already left: apply does nothing
  w.do({ op: 'close', v: V2, stickyUntil: 0 }); // no such session
  w.do({ op: 'rate', v: V2, score: 3, at: T0 }); // nothing to rate
  assert.equal(summary(st), [`1 message.left ${V1}`]);
  assert.is(st.outbox.get(1)?.reason, 'closed');
});

events('no events without a hook: the writer records the changes only', () => {
  const st = fresh();
  const w = new Changes(st);
  serviceDay(w);
  assert.is(st.outbox.size, 0);
  assert.is(st.eventSeq, 0);
  assert.not.ok(w.list.some((c) => c.op === 'emit'));
});

events('revert takes back the events with their numbers: the next decision numbers them again', () => {
  const st = fresh();
  writer(st).do({ op: 'open', v: V1, agent: ANN, at: T0 });
  const before = snapshot(st);
  const w = writer(st);
  w.do({ op: 'close', v: V1, stickyUntil: T0 + 10, at: T0 + 1 });
  w.do({ op: 'delivered', seqs: [1, 2] });
  assert.equal(summary(st), [`3 session.closed ${V1} ${ANN}`]);
  w.revert();
  assert.is(snapshot(st), before, 'the state exactly as before, the delivered events back in order');
  assert.is(st.eventSeq, 2);
  assert.equal([...st.outbox.keys()], [1, 2]);
});

events('replay of the journaled changes and a snapshot give the same numbers and events', () => {
  const live = fresh();
  const w = writer(live, true);
  serviceDay(w);
  w.do({ op: 'delivered', seqs: [1, 2, 3] });
  const replayed = fresh();
  for (const c of structuredClone(w.list) as Change[]) apply(replayed, c);
  assert.is(snapshot(replayed), snapshot(live));
  const restored = ShopState.fromParts(SHOP, live.limits, live.snapshotParts(200));
  assert.is(snapshot(restored), snapshot(live));
  assert.is(restored.eventSeq, live.eventSeq);
  // The next event after a restart continues the sequence: no id given twice.
  writer(restored).do({ op: 'open', v: 'v3@d.test', agent: ANN, at: T0 + 9_000 });
  assert.equal([...restored.outbox.keys()].slice(-2), [live.eventSeq + 1, live.eventSeq + 2]);
});

events('everything delivered: the snapshot still carries the sequence', () => {
  const st = fresh();
  writer(st).do({ op: 'open', v: V1, agent: ANN, at: T0 });
  writer(st).do({ op: 'delivered', seqs: [1, 2] });
  assert.is(st.outbox.size, 0);
  const restored = ShopState.fromParts(SHOP, st.limits, st.snapshotParts());
  assert.is(restored.eventSeq, 2);
});

events('a full outbox drops its oldest events; the undo brings them back in order', () => {
  const st = fresh(3);
  const w1 = writer(st);
  w1.do({ op: 'open', v: V1, agent: ANN, at: T0 }); // 1, 2
  w1.do({ op: 'open', v: V2, agent: ANN, at: T0 }); // 3, 4: 1 dropped
  assert.equal([...st.outbox.keys()], [2, 3, 4]);
  const before = JSON.stringify([...st.outbox]);
  const w2 = writer(st);
  w2.do({ op: 'close', v: V1, stickyUntil: 0, at: T0 + 1 }); // 5: 2 dropped
  w2.do({ op: 'close', v: V2, stickyUntil: 0, at: T0 + 1 }); // 6: 3 dropped
  assert.equal([...st.outbox.keys()], [4, 5, 6]);
  assert.is(st.eventsDropped, 3, 'counted for the metrics');
  w2.revert();
  assert.is(JSON.stringify([...st.outbox]), before);
  assert.is(st.eventSeq, 4);
  assert.is(st.eventsDropped, 1);
});

events.run();
