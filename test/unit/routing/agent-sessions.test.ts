// `/sessions`: an agent's in-band read of its own open sessions and the queue (src/routing/agent-info.ts),
// as the web agent console uses it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import { NS_AGENT_INFO, agentInfo } from '../../../src/routing/agent-info.js';
import { agentCommand } from '../../../src/routing/commands.js';
import { findChild, parseElement, textOf } from '../../../src/xmpp/xml.js';
import { Backends, deskWorld } from '../../support/desk.js';
import { oneShopConfig } from '../../support/one-shop.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();
const xml = (b: Uint8Array) => parseElement(Buffer.from(b).toString());

async function world() {
  return deskWorld({ backend: 'memory', backends, config: oneShopConfig(D, { agents: { ann: 1, bob: 1 } }) });
}
const visitorSays = (v: string, id: string) =>
  `<message type='consult' from='${a(v)}/web' to='${SHOP}'><body id='${id}'>hi</body></message>`;
const ask = (agent: string, id: string) =>
  `<message type='chat' from='${a(agent)}/pc' to='${SHOP}'><body id='${id}'>/sessions</body></message>`;

const t = suite('agent info (/sessions)');
t.after(() => backends.close());

t('the /sessions command is only /sessions alone in the body', () => {
  const m = (body: string) => parseElement(`<message><body>${body}</body></message>`);
  const isSessions = (x: ReturnType<typeof m>) => agentCommand(x, SHOP)?.name === 'sessions';
  assert.ok(isSessions(m('/sessions')));
  assert.ok(isSessions(m('  /sessions \n')));
  assert.not.ok(isSessions(m('/sessions please')));
  assert.not.ok(isSessions(m('sessions')));
  assert.not.ok(isSessions(parseElement('<message/>')));
});

t("agentInfo lists only the asking agent's sessions, oldest first, with the queue", () => {
  const s = (visitor: string, agent: string, startedAt: number) => ({
    shop: SHOP,
    visitor,
    agent,
    startedAt,
    lastVisitorAt: startedAt + 5,
    lastAgentAt: 0,
    remindedAt: 0,
    orphanedAt: 0,
  });
  const out = agentInfo({
    shop: SHOP,
    agent: a('ann'),
    status: 'standard',
    queue: 2,
    now: 1000,
    sessions: [s(a('v2'), a('ann'), 20), s(a('v1'), a('ann'), 10), s(a('v3'), a('bob'), 5)] as never,
  });
  assert.equal([out.attrs.to, out.attrs.from, out.attrs.type, out.attrs.qchatid], [a('ann'), SHOP, 'consult', '4']);
  assert.is(findChild(out, 'body')!.attrs.msgType, '15');
  const info = findChild(out, 'info')!;
  assert.equal(info.attrs, { xmlns: NS_AGENT_INFO, shop: SHOP, queue: '2', status: 'standard', sessions: '2' });
  assert.equal(
    info.children.map((c) => (c as { attrs: Record<string, string> }).attrs.visitor),
    [a('v1'), a('v2')],
  );
});

t('through the Desk: acked, answered to the agent alone, nothing relayed to a visitor, nothing changed', async () => {
  const w = await world();
  await w.online('ann@cs.test');
  await w.online('bob@cs.test');
  await w.filter(visitorSays('v1', 'm1'));
  await w.filter(visitorSays('v2', 'm2'));
  await w.filter(visitorSays('v3', 'm3')); // both full: waits
  const ann = w.desk.view.sessions(SHOP).find((s) => s.visitor === a('v1'))!.agent;
  const before = JSON.stringify(w.desk.view.sessions(SHOP));
  const v = await w.filter(ask(ann.split('@')[0]!, 'q1'));
  assert.is(v.action, Action.ACTION_DROP, 'not relayed');
  const [acked, answer] = v.extra.map(xml);
  assert.equal([acked!.attrs.type, acked!.attrs.to, findChild(acked!, 'body')!.attrs.id], ['mstat', ann, 'q1']);
  assert.is(answer!.attrs.to, ann);
  const info = findChild(answer!, 'info')!;
  assert.equal([info.attrs.queue, info.attrs.sessions], ['1', '1']);
  assert.equal((info.children[0] as { attrs: Record<string, string> }).attrs.visitor, a('v1'));
  assert.match(textOf(findChild(answer!, 'body')!), '1 open session, 1 waiting');
  assert.is(JSON.stringify(w.desk.view.sessions(SHOP)), before);
});

t('a visitor typing /sessions is an ordinary visitor message', async () => {
  const w = await world();
  await w.online('ann@cs.test');
  const v = await w.filter(`<message type='consult' from='${a('v9')}/web' to='${SHOP}'><body id='x1'>/sessions</body></message>`);
  assert.is(v.action, Action.ACTION_REWRITE);
  assert.is(xml(v.stanza).attrs.to, a('ann'));
});

t.run();
