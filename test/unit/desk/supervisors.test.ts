// A shop's supervisors, through the desk on every store: /live lists the open sessions and the queue; /monitor
// copies both directions of a session to the supervisor (marked) until /unmonitor, and survives a restart;
// /whisper reaches only the agent and is archived as a whisper line; /takeover moves the session to the supervisor,
// who then serves it as its agent. Nobody else may: an agent or a visitor is refused with forbidden.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Action, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import { NS_SUPERVISOR } from '../../../src/routing/supervisor.js';
import { findChild, parseElement, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { type Backend, Backends, deskWorld } from '../../support/desk.js';
import { oneShopConfig } from '../../support/one-shop.js';

const D = 'sup.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const BACKENDS: Backend[] = ['memory', 'pglite', 'postgres'];
const backends = new Backends();

async function world(backend: Backend) {
  const config = oneShopConfig(D, { agents: { ann: 1, bob: 1 }, shop: { language: 'en', supervisors: [a('sue')] } });
  const w = await deskWorld({ backend, backends, config });
  const says = (from: string, id: string, text: string, attrs = '') =>
    w.filter(`<message type='chat' from='${a(from)}/pc' to='${SHOP}'${attrs}><body id='${id}'>${text}</body></message>`);
  return Object.assign(w, {
    visitorSays: (v: string, id: string, text = 'hi') =>
      w.filter(`<message type='consult' from='${a(v)}/web' to='${SHOP}' qchatid='4'><body id='${id}' msgType='1'>${text}</body></message>`),
    agentSays: (agent: string, id: string, text: string, visitor: string) => says(agent, id, text, ` realto='${a(visitor)}'`),
    says,
  });
}

const xml = (b: Uint8Array) => parseElement(Buffer.from(b).toString());
const extra = (v: Verdict) => v.extra.map(xml);
const bodyText = (m: XmlElement) => textOf(findChild(m, 'body')!);
const to = (stanzas: XmlElement[], jid: string) => stanzas.filter((s) => s.attrs.to === jid);
const refusal = (v: Verdict) => (v.action === Action.ACTION_REJECT ? `${v.error!.condition}/${v.error!.type}` : undefined);

for (const backend of BACKENDS) {
  const t = suite(`supervisors [${backend}]`);

  t('/live lists the sessions and the queue; /monitor copies both directions, marked, also after a restart', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.online(a('sue'));
    await w.visitorSays('v1', 'm1'); // to ann
    await w.visitorSays('v2', 'm2'); // waits: bob is offline, ann is full
    const live = extra(await w.says('sue', 's1', '/live'));
    const info = to(live, a('sue')).find((m) => findChild(m, 'live'))!;
    const child = findChild(info, 'live')!;
    assert.is(child.attrs.xmlns, NS_SUPERVISOR);
    assert.equal([child.attrs.sessions, child.attrs.queue], ['1', '1']);
    assert.match(bodyText(info), `${a('v1')} → ${a('ann')}`);

    const started = extra(await w.says('sue', 's2', `/monitor v1`));
    assert.match(bodyText(to(started, a('sue')).find((m) => m.attrs.type !== 'mstat')!), 'You are monitoring the conversation');
    const fromVisitor = await w.visitorSays('v1', 'm3', 'where is my order?');
    assert.is(xml(fromVisitor.stanza).attrs.to, a('ann'), 'the agent still gets the message');
    const [copy] = to(extra(fromVisitor), a('sue'));
    assert.ok(copy, 'the supervisor gets a copy');
    assert.is(bodyText(copy), `[${a('v1')} → ${a('ann')}] where is my order?`);
    assert.equal(findChild(copy, 'monitored')?.attrs, { xmlns: NS_SUPERVISOR, visitor: a('v1'), agent: a('ann'), from: 'visitor' });
    assert.is(copy.attrs.no_update_msg_log, 'true');

    await w.restart();
    await w.online(a('ann'));
    const reply = await w.agentSays('ann', 'r1', 'on its way', 'v1');
    assert.is(xml(reply.stanza).attrs.to, a('v1'));
    const [back] = to(extra(reply), a('sue'));
    assert.ok(back, 'still monitored after a restart (journaled)');
    assert.is(bodyText(back), `[${a('ann')} → ${a('v1')}] on its way`);
    assert.is(findChild(back, 'monitored')?.attrs.from, 'agent');

    await w.says('sue', 's3', '/unmonitor');
    const after = await w.visitorSays('v1', 'm4', 'thanks');
    assert.equal(to(extra(after), a('sue')), [], 'no copies after /unmonitor');
  });

  t('/whisper reaches the agent only and is archived as a whisper line; /takeover makes the supervisor the agent', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.online(a('sue'));
    await w.visitorSays('v1', 'm1');
    w.takeSent();
    const whispered = extra(await w.says('sue', 'w1', '/whisper v1 offer the 10% coupon'));
    const [toAnn] = to(whispered, a('ann'));
    assert.match(bodyText(toAnn), 'offer the 10% coupon');
    assert.is(findChild(toAnn, 'whisper')?.attrs.from, a('sue'));
    assert.equal(to(whispered, a('v1')), [], 'the visitor gets nothing');

    const taken = extra(await w.says('sue', 't1', '/takeover v1'));
    assert.ok(
      to(taken, a('v1')).some((m) => bodyText(m).includes(a('sue'))),
      'the visitor is told who serves it now',
    );
    assert.ok(to(taken, a('ann')).length > 0, 'the agent is told');
    assert.is(w.desk.view.sessions(SHOP).find((s) => s.visitor === a('v1'))?.agent, a('sue'));
    const reply = await w.agentSays('sue', 'r1', 'I am the supervisor; the coupon is yours', 'v1');
    assert.is(xml(reply.stanza).attrs.to, a('v1'), 'the supervisor serves it as its agent');
    assert.is(xml(reply.stanza).attrs.realfrom, a('sue'));
    await w.tick();
    assert.is(w.desk.view.sessions(SHOP).find((s) => s.visitor === a('v1'))?.agent, a('sue'), 'timers keep it with the supervisor');

    await w.says('sue', 'c1', '/close');
    await w.desk.settled();
    const [record] = await w.archive.search({ shop: SHOP, visitor: a('v1') });
    const full = await w.archive.get(record.id);
    const whisper = full!.lines.find((l) => l.role === 'whisper');
    assert.equal(whisper && { who: whisper.who, text: whisper.text }, { who: a('sue'), text: 'offer the 10% coupon' });
    assert.ok(full!.agents.includes(a('sue')));
  });

  t('anyone but a supervisor is refused with forbidden', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1');
    assert.is(refusal(await w.says('ann', 'x1', '/monitor v1')), 'forbidden/auth', 'an agent');
    assert.is(refusal(await w.says('ann', 'x2', '/takeover v1')), 'forbidden/auth');
    assert.is(refusal(await w.visitorSays('v2', 'x3', '/whisper v1 hello')), 'forbidden/auth', 'a visitor');
    assert.is(w.desk.view.sessions(SHOP).find((s) => s.visitor === a('v1'))?.agent, a('ann'), 'nothing changed');
    assert.is(refusal(await w.says('sue', 'x4', '/monitor nobody')), 'item-not-found/cancel', 'a supervisor, no such session');
  });

  t.run();
}

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
