// Visitor context on the desk, on every store (memory, PGlite, PostgreSQL): what a visitor's client sent survives
// a restart (journal replay), is in the admin view of the session, lands in the archive with the session and is
// found by GET /archive's context search; `/history` is answered from the archive after the decision is durable.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { NS_CONTEXT } from '../../../src/domain/context.js';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import { NS_HISTORY } from '../../../src/routing/history.js';
import { findChild, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';
import { waitUntil } from '../../support/wait.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

async function world(backend: Backend) {
  const config = parseConfig({
    systemJid: a('admin'),
    archive: { retentionDays: 30, ratingWindowSec: 600 },
    shops: [{ jid: SHOP, name: 'Shop One', language: 'en', agents: [{ jid: a('ann'), maxSessions: 5 }] }],
  });
  const w = await deskWorld({ backend, backends, config });
  return Object.assign(w, {
    visitorSays: (visitor: string, id: string, text: string, context = '') =>
      w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}'>${text}</body>${context}</message>`),
    agentSays: (id: string, text: string, realto?: string) =>
      w.filter(
        `<message type='chat' from='${a('ann')}/pc' to='${SHOP}'${realto ? ` realto='${a(realto)}'` : ''}><body id='${id}'>${text}</body></message>`,
      ),
  });
}
const ctx = (inner: string) => `<context xmlns='${NS_CONTEXT}'>${inner}</context>`;

for (const backend of BACKENDS) {
  const t = suite(`visitor context and /history [${backend}]`);

  t('context survives a restart, shows in the session view, is archived and found by context search', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    const v = await w.visitorSays('v1', 'm1', 'hello', ctx(`<name>Ann Lee</name><order>A-1001</order><field var='plan'>Gold</field>`));
    assert.is(v.action, Action.ACTION_REWRITE);
    await w.restart(); // what the new desk knows comes from the journal
    await w.visitorSays('v1', 'm2', 'my phone', ctx('<phone>+44 20 7946 0000</phone>'));
    const [view] = w.desk.view.sessions(SHOP);
    assert.equal(view.context, { name: 'Ann Lee', order: 'A-1001', phone: '+44 20 7946 0000', fields: { plan: 'Gold' } });
    await w.visitorSays('v2', 'n1', 'no context here');
    await w.agentSays('c1', '/close', 'v1');
    await w.agentSays('c2', '/close', 'v2');
    await w.desk.settled();
    const found = async (context: string) => (await w.archive.search({ shop: SHOP, context })).map((r) => r.visitor);
    await waitUntil('both sessions archived', async () => (await w.archive.search({ shop: SHOP })).length === 2);
    assert.equal(await found('a-1001'), [a('v1')], 'case-insensitive, a value');
    assert.equal(await found('plan gold'), [a('v1')], 'a free field by name and value');
    assert.equal(await found('7946'), [a('v1')], 'a substring');
    assert.equal(await found('B-2'), []);
    const [r] = await w.archive.search({ shop: SHOP, visitor: a('v1') });
    assert.equal(r.context, { name: 'Ann Lee', order: 'A-1001', phone: '+44 20 7946 0000', fields: { plan: 'Gold' } });
    const [plain] = await w.archive.search({ shop: SHOP, visitor: a('v2') });
    assert.is(plain.context, undefined);
  });

  t('/history answers the agent from the archive, newest first, with or without a session', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    for (const [i, text] of ['first visit', 'second visit'].entries()) {
      await w.visitorSays('v1', `m${i}`, text, i === 0 ? ctx('<order>A-1</order>') : '');
      w.advance(1000);
      await w.agentSays(`c${i}`, '/close');
      w.advance(1000);
    }
    await w.desk.settled();
    await w.visitorSays('v1', 'm9', 'third visit');
    w.takeSent();
    const asked = await w.agentSays('h1', '/history');
    assert.is(asked.action, Action.ACTION_DROP, 'never relayed to the visitor');
    await w.desk.settled();
    const answerOf = (list: XmlElement[]) => list.find((m) => findChild(m, 'history'));
    let answer = answerOf(w.takeSent());
    assert.ok(answer, 'answered');
    assert.equal([answer!.attrs.to, answer!.attrs.qchatid, findChild(answer!, 'body')!.attrs.msgType], [a('ann'), '4', '15']);
    const h = findChild(answer!, 'history')!;
    assert.equal([h.attrs.xmlns, h.attrs.sessions], [NS_HISTORY, '2']);
    const sessions = h.children.filter((c): c is XmlElement => typeof c !== 'string');
    assert.equal(
      sessions.map((s) => textOf(findChild(s, 'first')!)),
      ['second visit', 'first visit'],
    );
    assert.ok(findChild(sessions[1], 'context'), 'the context it had');
    assert.match(textOf(findChild(answer!, 'body')!), /^Earlier sessions of v1@cs\.test \(2\):\n/);
    // Without a session of its own: about any visitor of the shop.
    await w.agentSays('c9', '/close', 'v1');
    await w.desk.settled();
    w.takeSent();
    await w.agentSays('h2', '/history v7');
    await w.desk.settled();
    answer = answerOf(w.takeSent());
    assert.equal(
      [findChild(answer!, 'history')!.attrs.sessions, textOf(findChild(answer!, 'body')!)],
      ['0', 'The archive has no earlier sessions of v7@cs.test.'],
    );
  });

  t.after(() => (backend === BACKENDS[BACKENDS.length - 1] ? backends.close() : undefined));
  t.run();
}
