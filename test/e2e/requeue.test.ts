// End to end: a requeued visitor keeps its place. Debian's ejabberd with mod_consult, the real sidecar process on
// PGlite, real XMPP clients. test01 (one chat at a time) serves visitor1; visitor2 arrives later and waits. test01's
// client goes away: after offlineGraceSec nobody else can take visitor1, so it waits again at its place by arrival,
// ahead of visitor2, and is told it is number 1 (visitor2 is not told again). test02 comes online and gets visitor1
// first, under the agentHistory heading with the conversation so far; visitor2 follows when test01 is back.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { DURABLE_STORES, type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { bodyId, type Element, isNotice, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const TOKEN = 'e2e-admin-token-requeue';

interface Ctx {
  stack: Stack;
  store: E2eStore;
  adminPort: number;
}
const e2e = suite<Ctx>('e2e a requeued visitor keeps its place');

setUpSuite(e2e, async (ctx) => {
  ctx.store = await openStore(DURABLE_STORES[0]); // PGlite
  ctx.adminPort = await freePort();
  ctx.stack = await startStack({
    domain: D,
    config: {
      systemJid: `admin@${D}`,
      store: ctx.store.url,
      admin: { port: ctx.adminPort, token: TOKEN },
      timers: { tickSec: 1, offlineGraceSec: 1 },
      shops: [
        {
          jid: SHOP,
          name: 'Requeue shop',
          language: 'en',
          agents: [
            { jid: `test01@${D}`, maxSessions: 1 },
            { jid: `test02@${D}`, maxSessions: 1 },
          ],
        },
      ],
    },
    users: ['visitor1', 'visitor2', 'test01', 'test02'],
  });
});

e2e.after(async (ctx) => {
  try {
    await ctx.stack?.stop();
  } finally {
    await ctx.store?.stop();
  }
});

const api = async (ctx: Ctx, p: string) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return (await res.json()) as Record<string, unknown> & Record<string, unknown>[];
};
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const acked = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
const isWelcome = (el: Element) => el.attrs.auto_reply === 'true' && el.getChildText('body') === 'Requeue shop';
const history = (id: string) => (el: Element) => bodyId(id)(el) && el.getChild('delay') !== undefined;
const online = (ctx: Ctx, agent: string) =>
  waitUntil(`${agent} online`, async () => ((await api(ctx, `/agents/${agent}@${D}`)).resources as unknown[] | undefined)?.length);
const waitingOrder = async (ctx: Ctx) => (await api(ctx, `/queue?shop=${SHOP}`)).map((q) => q.visitor);

e2e('an agent gone offline: its visitor waits again ahead of a later one, told number 1, served first with its history', async (ctx) => {
  const { stack } = ctx;
  const [v1, v2] = await Promise.all([stack.connect('visitor1', 'web'), stack.connect('visitor2', 'web')]);
  let a: TestClient = await stack.connect('test01', 'desk');
  await online(ctx, 'test01');

  // test01 serves visitor1 (and answers it); visitor2 comes later and waits, number 1.
  await v1.send(consult('R1-1', 'my order never came'));
  await a.waitFor(bodyId('R1-1'));
  await v1.waitFor(isWelcome);
  await a.send(`<message type='chat' to='${SHOP}' realto='visitor1@${D}'><body id='A-1' msgType='1'>Let me look</body></message>`);
  await v1.waitFor(bodyId('A-1'));
  await v2.send(consult('R2-1', 'hello?'));
  await v2.waitFor(acked('R2-1'));
  const placed = await v2.waitFor(isNotice);
  assert.is(placed.getChildText('body'), 'All our agents are busy. You are number 1 in the queue; please wait.');

  // test01 goes away; after offlineGraceSec (1 s) visitor1 waits again, at its place by arrival: before visitor2.
  await a.stop();
  const requeued = await v1.waitFor(isNotice, 20_000);
  assert.is(requeued.getChildText('body'), 'Your agent went offline. You are back in the queue at number 1.');
  assert.equal(await waitingOrder(ctx), [`visitor1@${D}`, `visitor2@${D}`]);
  await v2.settle();
  assert.is(v2.received.filter(isNotice).length, 1, 'visitor2, already waiting further back, is not told again');

  // test02 (one chat at a time) comes online: visitor1 first, with the conversation under the agentHistory heading.
  const b = await stack.connect('test02', 'desk');
  const heading = await b.waitFor(isNotice, 20_000);
  assert.equal(
    [heading.attrs.realfrom, heading.getChildText('body')],
    [`visitor1@${D}`, `The conversation of visitor1@${D} with the previous agent follows.`],
  );
  assert.is((await b.waitFor(history('R1-1'))).getChildText('body'), 'my order never came');
  assert.is((await b.waitFor(history('A-1'))).getChildText('body'), 'Let me look');
  assert.equal(await waitingOrder(ctx), [`visitor2@${D}`], 'visitor2 still waits');
  await b.settle();
  assert.not.ok(
    b.received.some((el) => el.attrs.realfrom === `visitor2@${D}`),
    'nothing of visitor2 reaches test02 while it serves visitor1',
  );
  const sessions = await api(ctx, `/sessions?shop=${SHOP}`);
  assert.equal(
    sessions.map((s) => [s.visitor, s.agent]),
    [[`visitor1@${D}`, `test02@${D}`]],
  );

  // test01 is back: visitor2 is served now, welcomed, and its kept message reaches test01.
  a = await stack.connect('test01', 'desk');
  assert.is((await a.waitFor(bodyId('R2-1'), 20_000)).getChildText('body'), 'hello?');
  await v2.waitFor(isWelcome);
  await v1.settle();
  assert.is(v1.received.filter(isWelcome).length, 1, 'visitor1 is not welcomed a second time');
  assert.equal(await waitingOrder(ctx), []);
});

e2e.run();
