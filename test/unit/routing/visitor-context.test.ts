// Visitor context: parsing, bounds and merging (src/domain/context.ts), and the decisions (src/routing/context.ts):
// the agent gets the server's structured child and a readable notice, never the visitor's raw child; the context
// is kept on the transcript through the queue and a transfer, journaled with an exact undo, in snapshots, and
// listed by `/sessions`. `/history` is parsed and answered from records (src/routing/history.ts).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { CONTEXT_LIMITS, NS_CONTEXT, contextOf, contextSearchText, mergeContext, withoutContext } from '../../../src/domain/context.js';
import { resolveTexts } from '../../../src/domain/texts.js';
import { fromAgent } from '../../../src/routing/agent.js';
import { Changes } from '../../../src/routing/changes.js';
import { parseCommand } from '../../../src/routing/commands.js';
import { NS_HISTORY, historyAnswer } from '../../../src/routing/history.js';
import { transferSession } from '../../../src/routing/session.js';
import { apply, type Change, ShopState, type Undo } from '../../../src/routing/state.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { findChild, parseElement, serialize, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { closedSession } from '../../support/archive.js';
import { body, handDecisions, parsed, to } from '../../support/routing.js';

const SHOP = 'shop_1@d.test';
const ANN = 'ann@d.test';
const BOB = 'bob@d.test';
const V1 = 'v1@d.test';
const CTX = `<context xmlns='${NS_CONTEXT}'><name>Ann Lee</name><email>ann@example.com</email><field var='plan'>gold</field></context>`;

const stanza = (inner: string, channel?: string) =>
  parseElement(
    `<message type='consult' from='${V1}/web' to='${SHOP}'${channel ? ` channelid='${channel}'` : ''}><body id='m1'>hi</body>${inner}</message>`,
  );
/** A context element's entries as [name, value] pairs, in order. */
const entries = (c: XmlElement | undefined) =>
  (c?.children ?? []).filter((x): x is XmlElement => typeof x !== 'string').map((x) => [x.attrs.var ?? x.name, textOf(x)]);
const contextIn = (m: XmlElement) => findChild(m, 'context');

function setup(max = 1) {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', language: 'en', agents: [] }] });
  const bench = handDecisions({ config, members: { [ANN]: max, [BOB]: max }, online: [ANN] });
  const visitorSends = (m: XmlElement) => bench.decide((c, w) => fromVisitor(c, w, m, V1, 'consult'));
  const agentSays = (agent: string, text: string, id: string, realto = V1) =>
    bench.decide((c, w) =>
      fromAgent(
        c,
        w,
        parseElement(`<message type='chat' from='${agent}/pc' to='${SHOP}' realto='${realto}'><body id='${id}'>${text}</body></message>`),
        agent,
        'chat',
      ),
    );
  return { ...bench, visitorSends, agentSays };
}

const t = suite('visitor context');

t('a context child and channelid keys are read; invalid parts are named and dropped, the rest kept', () => {
  const u = contextOf(
    stanza(
      `<context xmlns='${NS_CONTEXT}'><name> Ann </name><email>not-an-address</email><page>https://shop.example/cart</page>` +
        `<field var='plan'>gold</field><field var='bad name'>x</field><colour>red</colour></context>`,
      JSON.stringify({ cn: 'consult', d: 'send', usrType: 'usr', pid: 'p1', order: 1001, phone: '+1 555 0100', fields: { tier: 'b' } }),
    ),
  )!;
  assert.equal(u.set, {
    order: '1001',
    phone: '+1 555 0100',
    fields: { tier: 'b', plan: 'gold' },
    name: 'Ann',
    page: 'https://shop.example/cart',
  });
  assert.equal(u.dropped, [
    'email is not an e-mail address',
    'field "bad name" has no valid name (1 to 64 of A-Z a-z 0-9 _ . : -)',
    '<colour> is not a context element (use name, email, phone, page, order or field)',
  ]);
  // No context: none at all (a channelid with only routing keys, another namespace).
  assert.is(contextOf(stanza(`<context xmlns='urn:other'><name>x</name></context>`, '{"pid":"p1"}')), undefined);
  assert.is(contextOf(stanza('', 'not json')), undefined);
});

t('merging: later values replace, an empty value removes, and bounds drop only the newest parts', () => {
  const first = mergeContext(undefined, { set: { name: 'Ann', fields: { plan: 'gold' } }, dropped: [] })!;
  assert.equal(first, { ctx: { name: 'Ann', fields: { plan: 'gold' } }, dropped: [] });
  const second = mergeContext(first.ctx, { set: { name: 'Ann Lee', fields: { plan: '' } }, dropped: [] })!;
  assert.equal(second.ctx, { name: 'Ann Lee' });
  assert.is(mergeContext(second.ctx, { set: { name: 'Ann Lee' }, dropped: [] }), undefined, 'nothing changed');
  // Too many entries: the ones past the bound are dropped and named.
  const many = Object.fromEntries(Array.from({ length: CONTEXT_LIMITS.entries + 2 }, (_, i) => [`k${String(i).padStart(2, '0')}`, 'v']));
  const bounded = mergeContext(second.ctx, { set: { fields: many }, dropped: [] })!;
  assert.is(Object.keys(bounded.ctx.fields!).length, CONTEXT_LIMITS.entries - 1); // name is one of them
  assert.equal(bounded.dropped, [
    `field k19: a context holds at most ${CONTEXT_LIMITS.entries} entries`,
    `field k20: a context holds at most ${CONTEXT_LIMITS.entries} entries`,
    `field k21: a context holds at most ${CONTEXT_LIMITS.entries} entries`,
  ]);
  // Too many characters in all.
  const long = 'x'.repeat(CONTEXT_LIMITS.valueChars);
  const big = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`f${i}`, long]));
  const sized = mergeContext(undefined, { set: { fields: big }, dropped: [] })!;
  assert.is(Object.keys(sized.ctx.fields!).length, 7); // 7 × 258 = 1806; the 8th passes 2048
  assert.equal(sized.dropped, [
    `field f7: a context holds at most ${CONTEXT_LIMITS.totalChars} characters`,
    `field f8: a context holds at most ${CONTEXT_LIMITS.totalChars} characters`,
  ]);
  // One value too long.
  assert.equal(contextOf(stanza(`<context xmlns='${NS_CONTEXT}'><order>${long}x</order></context>`))!.dropped, [
    `order is longer than ${CONTEXT_LIMITS.valueChars} characters`,
  ]);
  assert.is(contextSearchText({ name: 'Ann', fields: { Plan: 'GOLD' } }), 'name ann\nplan gold');
});

t('the first message: the agent gets the server’s structured child and a readable notice; the raw child is not relayed', () => {
  const s = setup();
  const raw = stanza(`<context xmlns='${NS_CONTEXT}'><name>Ann Lee</name><email>nope</email><field var='plan'>gold</field></context>`);
  const d = s.visitorSends(raw);
  assert.is(d.action, 'rewrite');
  if (d.action !== 'rewrite') return;
  const relayed = parseElement(d.xml);
  assert.is(relayed.attrs.to, ANN);
  const children = relayed.children.filter((c): c is XmlElement => typeof c !== 'string' && c.name === 'context');
  assert.is(children.length, 1, 'only the server’s child');
  assert.equal(entries(children[0]), [
    ['name', 'Ann Lee'],
    ['plan', 'gold'],
  ]);
  const out = parsed(d.extra);
  const toAnn = to(out, ANN);
  assert.equal(toAnn.map(body), ['About visitor v1@d.test: name: Ann Lee; plan: gold']);
  assert.equal(entries(contextIn(toAnn[0])), [
    ['name', 'Ann Lee'],
    ['plan', 'gold'],
  ]);
  assert.is(findChild(toAnn[0], 'body')!.attrs.msgType, '15');
  // The visitor learns what was not kept, and its message went through.
  assert.ok(to(out, V1).some((m) => body(m) === 'Part of what your client sent about you was not kept: email is not an e-mail address.'));
  assert.equal(
    s.journal.filter((c) => c.op === 'context'),
    [{ op: 'context', v: V1, ctx: { name: 'Ann Lee', fields: { plan: 'gold' } } }],
  );
  assert.equal(s.st.transcripts.get(V1)!.context, { name: 'Ann Lee', fields: { plan: 'gold' } });
});

t('without context nothing changes: the same stanzas as before, no context change', () => {
  const s = setup();
  const d = s.visitorSends(stanza(''));
  if (d.action !== 'rewrite') throw new Error('relayed');
  assert.not.ok(d.xml.includes('context'));
  assert.equal(
    parsed(d.extra).map((m) => [m.attrs.to, m.attrs.type]),
    [
      [V1, 'mstat'],
      [V1, 'consult'],
    ],
    'the ack and the welcome only',
  );
  assert.not.ok(s.journal.some((c) => c.op === 'context'));
  // The same context again later: no change and no notice.
  s.visitorSends(stanza(CTX));
  const n = s.journal.length;
  const again = s.visitorSends(stanza(CTX));
  assert.not.ok(s.journal.slice(n).some((c) => c.op === 'context'));
  assert.equal(to(parsed(again.extra), ANN), []);
});

t('a waiting visitor’s context reaches the agent who serves it, and the next agent on a transfer', () => {
  const s = setup();
  s.online.delete(ANN);
  s.visitorSends(stanza(CTX)); // nobody online: it waits, its context kept on its transcript
  assert.ok(s.st.queue.has(V1));
  assert.equal(s.st.transcripts.get(V1)!.context, { name: 'Ann Lee', email: 'ann@example.com', fields: { plan: 'gold' } });
  s.online.add(ANN);
  const served = parsed(s.decide((c, w) => fromVisitor(c, w, stanza(''), V1, 'consult')).extra);
  const notices = to(served, ANN).filter((m) => contextIn(m));
  assert.is(notices.length, 1);
  assert.is(body(notices[0]), 'About visitor v1@d.test: name: Ann Lee; email: ann@example.com; plan: gold');
  s.online.add(BOB);
  const moved = parsed(s.decide((c, w) => transferSession(c, w, w.state.sessions.get(V1)!, BOB, '')));
  const toBob = to(moved, BOB).filter((m) => contextIn(m));
  assert.equal(entries(contextIn(toBob[0])), [
    ['name', 'Ann Lee'],
    ['email', 'ann@example.com'],
    ['plan', 'gold'],
  ]);
  // The kept messages reach bob (the desk releases them after commit).
  s.decide((_c, w) => w.do({ op: 'release', v: V1, n: w.state.kept.get(V1)!.length, relayed: [] }));
  // An update during the session: the agent hears of it; the archive record gets the latest.
  const update = s.visitorSends(stanza(`<context xmlns='${NS_CONTEXT}'><order>A-7</order><email/></context>`));
  if (update.action !== 'rewrite') throw new Error('relayed');
  assert.equal(entries(contextIn(parseElement(update.xml))), [
    ['name', 'Ann Lee'],
    ['order', 'A-7'],
    ['plan', 'gold'],
  ]);
  s.agentSays(BOB, '/close', 'c1');
  const [record] = [...s.st.unarchived.values()].filter((u) => u.kind === 'session');
  assert.equal(record.kind === 'session' && record.record.context, { name: 'Ann Lee', order: 'A-7', fields: { plan: 'gold' } });
});

t('a left message keeps the context; the agent who gets it at opening gets the context notice', () => {
  const hours = { timeZone: 'UTC', weekly: { thu: [['09:00', '18:00']] } };
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', language: 'en', agents: [], hours }] });
  const s = handDecisions({ config, members: { [ANN]: 1 }, online: [ANN], now: Date.UTC(2024, 4, 2, 3) }); // Thu 03:00
  s.decide((c, w) => fromVisitor(c, w, stanza(CTX), V1, 'consult'));
  assert.ok(s.st.left.has(V1), 'closed: a left message');
  assert.equal(s.st.transcripts.get(V1)!.context, { name: 'Ann Lee', email: 'ann@example.com', fields: { plan: 'gold' } });
  s.at(Date.UTC(2024, 4, 2, 9));
  const out = s.timers();
  const told = to(out, ANN).filter((m) => contextIn(m));
  assert.equal(told.map(body), ['About visitor v1@d.test: name: Ann Lee; email: ann@example.com; plan: gold']);
  // The kept message itself went without the visitor's child.
  assert.not.ok((s.st.kept.get(V1) ?? []).some((k) => k.xml.includes('context')));
});

t('/sessions lists each session’s context, structured and as text', () => {
  const s = setup();
  s.visitorSends(stanza(CTX));
  const d = s.decide((c, w) =>
    fromAgent(
      c,
      w,
      parseElement(`<message type='chat' from='${ANN}/pc' to='${SHOP}'><body id='q1'>/sessions</body></message>`),
      ANN,
      'chat',
    ),
  );
  const info = to(parsed(d.extra), ANN).find((m) => findChild(m, 'info'))!;
  assert.is(body(info), '1 open session, 0 waiting, 0 missed (0 in a row)\nv1@d.test: name: Ann Lee; email: ann@example.com; plan: gold');
  const session = findChild(findChild(info, 'info')!, 'session')!;
  assert.equal(entries(contextIn(session)), [
    ['name', 'Ann Lee'],
    ['email', 'ann@example.com'],
    ['plan', 'gold'],
  ]);
});

t('context changes replay to the same state, survive a snapshot, and are taken back exactly', () => {
  const s = setup();
  s.online.delete(ANN);
  s.visitorSends(stanza(CTX));
  s.online.add(ANN);
  s.visitorSends(stanza(`<context xmlns='${NS_CONTEXT}'><name>Ann B. Lee</name></context>`));
  const json = JSON.parse(JSON.stringify(s.journal)) as Change[];
  const replayed = new ShopState(SHOP, s.st.limits);
  const undos: Undo[] = json.map((c) => apply(replayed, c));
  assert.equal(replayed.snapshotParts(), s.st.snapshotParts());
  const loaded = ShopState.fromParts(SHOP, s.st.limits, s.st.snapshotParts(64));
  assert.equal(loaded.transcripts.get(V1)!.context, { name: 'Ann B. Lee', email: 'ann@example.com', fields: { plan: 'gold' } });
  assert.equal(loaded.snapshotParts(), s.st.snapshotParts());
  for (let i = undos.length - 1; i >= 0; i--) undos[i]();
  assert.equal(replayed.snapshotParts(), new ShopState(SHOP, s.st.limits).snapshotParts());
  // A decision taken back (its commit failed) leaves the context as it was.
  const before = s.st.snapshotParts();
  const w = new Changes(s.st);
  fromVisitor(s.cx(), w, stanza(`<context xmlns='${NS_CONTEXT}'><phone>+44 20 7946 0000</phone></context>`), V1, 'consult');
  assert.ok(w.list.some((c) => c.op === 'context'));
  w.revert();
  assert.equal(s.st.snapshotParts(), before);
});

t('withoutContext leaves a stanza without context untouched', () => {
  const m = stanza('');
  assert.is(withoutContext(m), m);
  assert.is(serialize(withoutContext(stanza(CTX))), serialize(stanza('')));
});

t('/history parses with or without a visitor, and is answered from records', () => {
  assert.equal(parseCommand('/history', SHOP), { name: 'history' });
  assert.equal(parseCommand('/history v9', SHOP), { name: 'history', visitor: 'v9@d.test' });
  assert.equal(parseCommand(' /history v9@other.test ', SHOP), { name: 'history', visitor: 'v9@other.test' });
  assert.is(parseCommand('/history v9 extra', SHOP), undefined);
  const texts = resolveTexts('en', {});
  const lookup = { agent: ANN, visitor: V1, at: 1_700_000_000_000 };
  const r = closedSession({
    id: 's1',
    shop: SHOP,
    visitor: V1,
    agent: BOB,
    startedAt: Date.UTC(2024, 4, 1, 10, 0),
    endedAt: Date.UTC(2024, 4, 1, 10, 5),
  });
  const rated = {
    ...r,
    rating: 5,
    context: { name: 'Ann' },
    lines: [{ at: r.startedAt, role: 'visitor' as const, who: V1, text: 'where is my order?' }],
  };
  const answer = parseElement(serialize(historyAnswer({ shop: SHOP, texts, lookup, found: [rated] })));
  assert.equal(
    [answer.attrs.to, answer.attrs.realfrom, answer.attrs.qchatid, findChild(answer, 'body')!.attrs.msgType],
    [ANN, V1, '4', '15'],
  );
  assert.is(body(answer), 'Earlier sessions of v1@d.test (1):\n2024-05-01 10:00 UTC, agent bob@d.test, rated 5: where is my order?');
  const h = findChild(answer, 'history')!;
  assert.equal([h.attrs.xmlns, h.attrs.visitor, h.attrs.sessions], [NS_HISTORY, V1, '1']);
  const session = findChild(h, 'session')!;
  assert.equal(
    [session.attrs.id, session.attrs.agent, session.attrs.rating, textOf(findChild(session, 'first')!)],
    ['s1', BOB, '5', 'where is my order?'],
  );
  assert.equal(entries(contextIn(session)), [['name', 'Ann']]);
  const none = parseElement(serialize(historyAnswer({ shop: SHOP, texts, lookup, found: [] })));
  assert.is(body(none), 'The archive has no earlier sessions of v1@d.test.');
  const failed = parseElement(serialize(historyAnswer({ shop: SHOP, texts, lookup, found: new Error('down') })));
  assert.is(body(failed), 'The archive of v1@d.test’s sessions cannot be read right now; send /history again in a moment.');
  assert.is(findChild(failed, 'history'), undefined);
});

t.run();
