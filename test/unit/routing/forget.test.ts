// Erasure of a visitor in one shop's state (the `forget` change): every map that held something of it (its webhook
// events not yet delivered included) lets go, the other visitors keep everything, an undo puts the state back exactly
// (its snapshot compares equal), and replaying the journal gives the same state as the live one. An open session ends
// with a notice to its agent only.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { restore } from '../../../src/desk/held-shops.js';
import { closeSession } from '../../../src/routing/session.js';
import { forgetVisitor, holds } from '../../../src/routing/forget.js';
import { apply, type Change } from '../../../src/routing/state.js';
import { body, handDecisions, parsed } from '../../support/routing.js';

const SHOP = 'shop_1@d.test';
const ANN = 'ann@d.test';
const v = (n: number) => `v${n}@d.test`;
const msg = (n: number, text: string) => `<message from='${v(n)}/web' to='${SHOP}'><body>${text}</body></message>`;

/** v0 closed (an unarchived record, a sticky hint, a rating offer), v1 served by ann, v2 waiting, v3 a left message. */
function busyShop() {
  const config = parseConfig({
    archive: { ratingWindowSec: 600 },
    shops: [{ jid: SHOP, name: 'S', language: 'en', agents: [] }],
  });
  const bench = handDecisions({ config, members: { [ANN]: 5 }, online: [ANN] });
  const { decide, advance } = bench;
  const at = () => bench.cx().now;
  decide((_cx, w) => {
    w.do({ op: 'open', v: v(0), agent: ANN, at: at() });
    w.do({ op: 'said', v: v(0), by: 'visitor', at: at(), xml: msg(0, 'zero-secret'), text: 'zero-secret' });
  });
  advance(1000);
  decide((cx, w) => closeSession(cx, w, w.state.sessions.get(v(0))!, 'agent'));
  advance(1000);
  decide((_cx, w) => {
    w.do({ op: 'open', v: v(1), agent: ANN, at: at() });
    w.do({ op: 'said', v: v(1), by: 'visitor', at: at(), xml: msg(1, 'one-secret'), text: 'one-secret' });
    w.do({ op: 'said', v: v(1), by: 'agent', at: at() + 1, xml: msg(1, 'reply'), text: 'reply' });
    w.do({ op: 'enqueue', v: v(2), at: at(), g: '' });
    w.do({ op: 'keep', v: v(2), at: at(), xml: msg(2, 'two-secret'), text: 'two-secret' });
    w.do({ op: 'keep', v: v(3), at: at(), xml: msg(3, 'three-secret'), text: 'three-secret' });
    w.do({ op: 'leave', v: v(3), at: at(), reason: 'closed' });
    // Webhook events not yet delivered, of v1 and v2.
    w.do({ op: 'emit', e: { type: 'message', at: at(), visitor: v(1), session: 's1', by: 'visitor', text: 'one-secret' } });
    w.do({ op: 'emit', e: { type: 'session.opened', at: at(), visitor: v(2), session: 's2', waiting: true } });
  });
  return bench;
}

const snapshot = (b: ReturnType<typeof busyShop>) => b.st.snapshotParts().join('');

const t = suite('forget: a visitor erased from a shop state');

t('each kind of visitor leaves nothing of itself; the others keep everything', () => {
  for (const n of [0, 1, 2, 3]) {
    const b = busyShop();
    assert.ok(holds(b.st, v(n)), `v${n} is held before`);
    const others = [0, 1, 2, 3].filter((m) => m !== n);
    b.decide((cx, w) => forgetVisitor(cx, w, v(n)));
    assert.not.ok(holds(b.st, v(n)), `v${n} is not held after`);
    const snap = snapshot(b);
    assert.not.ok(snap.includes(v(n)), `v${n}'s JID is nowhere in the snapshot`);
    for (const m of others) assert.ok(holds(b.st, v(m)), `v${m} is still held after v${n} went`);
    assert.is(b.st.byAgent.get(ANN)?.has(v(n)) ?? false, false);
    assert.is(b.st.waitingFor(''), n === 2 ? 0 : 1, 'the waiting count follows the queue');
    assert.is(b.st.outbox.size, n === 1 || n === 2 ? 1 : 2, 'its undelivered events go, the others stay');
  }
});

t('an open session ends: its agent is told, the visitor is not', () => {
  const b = busyShop();
  const out = parsed(b.decide((cx, w) => forgetVisitor(cx, w, v(1))));
  assert.equal(
    out.map((m) => [m.attrs.to, m.attrs.realfrom, body(m)]),
    [[ANN, v(1), `The conversation with ${v(1)} is closed: the visitor asked to be forgotten and its data was erased.`]],
  );
  assert.is(b.st.load(ANN), 0);
});

t('an undo puts everything back exactly, order included', () => {
  for (const n of [0, 1, 2, 3, 9]) {
    const b = busyShop();
    const before = snapshot(b);
    const undo = apply(b.st, { op: 'forget', v: v(n) });
    if (n !== 9) assert.is.not(snapshot(b), before);
    undo();
    assert.is(snapshot(b), before, `v${n}: the undone state`);
    assert.equal([b.st.positionOf(v(2)), b.st.waitingFor(''), b.st.load(ANN)], [1, 1, 1]);
    assert.is(b.st.stickyAgent(v(0), b.cx().now), ANN);
  }
});

t('replaying the journal, the forget included, gives the live state', () => {
  const b = busyShop();
  b.decide((cx, w) => forgetVisitor(cx, w, v(1)));
  b.decide((cx, w) => forgetVisitor(cx, w, v(0)));
  const replayed = restore(SHOP, b.shop.limits, { batches: [b.journal as Change[]] });
  assert.is(replayed.snapshotParts().join(''), snapshot(b));
  assert.ok(b.journal.some((c) => c.op === 'forget'));
});

t('forgetting a visitor the shop never saw changes nothing', () => {
  const b = busyShop();
  const before = snapshot(b);
  const out = b.decide((cx, w) => forgetVisitor(cx, w, v(9)));
  assert.equal([out, snapshot(b)], [[], before]);
});

t.run();
