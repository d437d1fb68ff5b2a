// Skill groups: a consult naming a product (channelid "pid") goes to the groups mapped to it,
// else the default group, else any agent; queue and capacity per group; transfer to a group.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Action, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import { parseCommand } from '../../../src/routing/commands.js';
import { productOf, routeKey } from '../../../src/routing/groups.js';
import { DEFAULT_BOT, DEFAULT_LIMITS, type Group, type Shop } from '../../../src/domain/shop.js';
import { findChild, parseElement, textOf } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';
import { oneShopConfig } from '../../support/one-shop.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

const GROUPS = [
  { name: 'tv', agents: [a('bob')], products: ['sku-tv', 'sku-radio'], maxSessions: 1 },
  { name: 'phones', agents: [a('cat'), a('dan')], products: ['sku-phone'] },
  { name: 'front', isDefault: true, agents: [a('ann')] },
];

async function world(backend: Backend) {
  const config = oneShopConfig(D, { agents: { ann: 3, bob: 3, cat: 3, dan: 3, eve: 3 }, shop: { groups: GROUPS } });
  const w = await deskWorld({ backend, backends, config });
  return Object.assign(w, {
    ask: (visitor: string, id: string, pid?: string) => {
      const channel = JSON.stringify({ cn: 'consult', d: 'send', usrType: 'usr', ...(pid ? { pid } : {}) });
      return w.filter(
        `<message type='consult' from='${a(visitor)}/web' to='${SHOP}' channelid='${channel}' qchatid='4'><body id='${id}' msgType='1'>hi</body></message>`,
      );
    },
    agentSays: (agent: string, id: string, text: string, realto: string) =>
      w.filter(`<message type='chat' from='${a(agent)}/pc' to='${SHOP}' realto='${a(realto)}'><body id='${id}'>${text}</body></message>`),
  });
}

const to = (v: Verdict) => (v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined);

for (const backend of BACKENDS) {
  const groups = suite(`groups [${backend}]`);

  groups('a product goes to its group, anything else to the default group', async () => {
    const w = await world(backend);
    for (const n of ['ann', 'bob', 'cat', 'dan', 'eve']) await w.online(a(n));
    assert.is(to(await w.ask('v1', 'x1', 'sku-radio')), a('bob'));
    assert.ok([a('cat'), a('dan')].includes(to(await w.ask('v2', 'x2', 'sku-phone'))!));
    assert.is(to(await w.ask('v3', 'x3', 'sku-unknown')), a('ann'), 'unmapped product: the default group');
    assert.is(to(await w.ask('v4', 'x4')), a('ann'), 'no product: the default group');
    assert.is(w.desk.view.sessions(SHOP).find((s) => s.visitor === a('v1'))!.group, 'tv');
  });

  groups('a group nobody staffs falls back to the default group, then to any agent of the shop', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    assert.is(to(await w.ask('v1', 'x1', 'sku-tv')), a('ann'), 'bob offline: the default group');
    await w.offline(a('ann'));
    await w.online(a('eve'));
    assert.is(to(await w.ask('v2', 'x2', 'sku-tv')), a('eve'), 'nobody of tv or front: any agent');
  });

  groups("capacity and queue per group: a full group's visitors wait, others are still served", async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.online(a('bob'));
    assert.is(to(await w.ask('v1', 'x1', 'sku-tv')), a('bob'));
    const waiting = await w.ask('v2', 'x2', 'sku-tv'); // tv's maxSessions is 1 per agent
    assert.is(waiting.action, Action.ACTION_DROP);
    const told = waiting.extra.map((x) => parseElement(Buffer.from(x).toString())).find((m) => m.attrs.auto_reply === 'true')!;
    assert.match(textOf(findChild(told, 'body')!), '1', 'first in the tv queue');
    assert.is(to(await w.ask('v3', 'x3')), a('ann'), 'the default group is not held up by the tv queue');
    assert.equal(
      w.desk.view.queue(SHOP).map((q) => q.visitor),
      [a('v2')],
    );
    w.takeSent();
    await w.agentSays('bob', 'c1', '/close', 'v1');
    await w.desk.settled();
    const session = w.desk.view.sessions(SHOP).find((s) => s.visitor === a('v2'));
    assert.equal([session?.agent, session?.group], [a('bob'), 'tv'], 'bob freed up: the tv visitor is his');
  });

  groups('transfer to a group: /transfer #group, and through the desk; refused when the group has no room', async () => {
    const w = await world(backend);
    for (const n of ['ann', 'bob', 'cat']) await w.online(a(n));
    assert.is(to(await w.ask('v1', 'x1')), a('ann'));
    const moved = await w.agentSays('ann', 't1', '/transfer #phones wants a phone', 'v1');
    assert.is(moved.action, Action.ACTION_DROP);
    const s = w.desk.view.sessions(SHOP).find((x) => x.visitor === a('v1'))!;
    assert.equal([s.agent, s.group], [a('cat'), 'phones']);
    assert.is(to(await w.ask('v2', 'x2', 'sku-tv')), a('bob'));
    assert.is(to(await w.ask('v3', 'x3')), a('ann'));
    const refused = await w.agentSays('ann', 't2', '/transfer #tv', 'v3');
    assert.is(refused.error?.condition, 'resource-constraint', 'bob has his one tv session');
    await w.desk.transferToGroup(SHOP, a('v3'), 'front').then(
      () => assert.unreachable('ann is the only agent of front'),
      (e: Error) => assert.match(e.message, 'no agent of group front'),
    );
    const unknown = await w.agentSays('ann', 't3', '/transfer #nope', 'v3');
    assert.is(unknown.error?.condition, 'item-not-found');
  });

  groups.run();
}

const pure = suite('groups: pure routing');
const shop = (groups: Group[]): Shop => ({
  jid: SHOP,
  name: 's',
  welcome: 'w',
  noAgentText: 'n',
  strategy: 'least-busy',
  queueEnabled: true,
  limits: DEFAULT_LIMITS,
  language: 'zh',
  texts: {},
  groups,
  bot: DEFAULT_BOT,
});
const g = (name: string, agents: string[], products: string[], isDefault = false): Group => ({ name, agents, products, isDefault });

pure('routeKey: every mapped group that is staffed, else the default, else the shop', () => {
  const s = shop([g('a', ['x'], ['p1']), g('b', ['y'], ['p1']), g('d', ['z'], [], true)]);
  assert.is(
    routeKey(s, 'p1', () => true),
    'a,b',
  );
  assert.is(
    routeKey(s, 'p1', (ag) => ag === 'z'),
    'd',
  );
  assert.is(
    routeKey(s, 'p2', () => true),
    'd',
  );
  assert.is(
    routeKey(s, 'p1', () => false),
    '',
  );
  assert.is(
    routeKey(shop([]), 'p1', () => true),
    '',
  );
});

pure('productOf: channelid pid, string or number; anything else none', () => {
  const m = (channelid: string) => parseElement(`<message channelid='${channelid}'/>`);
  assert.is(productOf(m('{"cn":"consult","d":"send","pid":"sku-1"}')), 'sku-1');
  assert.is(productOf(m('{"pid":42}')), '42');
  assert.is(productOf(m('{"cn":"consult"}')), undefined);
  assert.is(productOf(m('not json')), undefined);
});

pure('parseCommand: /transfer #group [reason]', () => {
  assert.equal(parseCommand('/transfer #tv needs a tv', SHOP), { name: 'transfer-group', group: 'tv', reason: 'needs a tv' });
  assert.equal(parseCommand('/transfer bob', SHOP), { name: 'transfer', to: a('bob'), reason: '' });
});

pure.run();

const teardown = suite('teardown');
teardown('close backends', async () => {
  await backends.close();
});
teardown.run();
