// End to end: opening hours with left messages, and waiting that ends. Debian's ejabberd with mod_consult, the real
// sidecar process, real XMPP clients; one suite on PGlite and one on PostgreSQL. The hours shop is closed today and
// tomorrow by dated exceptions (in Asia/Shanghai): visitors' messages are acked and kept as left messages, each visitor
// told when the shop opens. The sidecar is SIGKILLed while they wait and started again; then the admin API removes the
// exceptions, the shop is open, and the left messages reach the two agents spread, each visitor's in order, every
// message once. The queue shop lets a visitor wait 2 s at most: past that it is told, leaves the queue (an abandoned
// wait) and its messages become a left message, which its agent gets once it has room.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { DURABLE_STORES, decidesShops, type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { type Element, isNotice, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const QUEUE_SHOP = `shop_3@${D}`;
const TOKEN = 'e2e-admin-token-opening-hours';
const ZONE = 'Asia/Shanghai';
const VISITORS = ['visitor1', 'visitor2', 'visitor3', 'visitor4'];
const ALL_DAY = Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => [d, [['00:00', '24:00']]]));

/** A day in Shanghai as YYYY-MM-DD, `plus` days after today there; and when that day begins (UTC+8, no DST). */
const shanghaiDay = (plus: number) => {
  const [y, m, d] = new Intl.DateTimeFormat('en-CA', { timeZone: ZONE }).format(Date.now()).split('-').map(Number);
  const start = Date.UTC(y, m - 1, d + plus) - 8 * 3600_000;
  return { date: new Date(start + 8 * 3600_000).toISOString().slice(0, 10), start };
};

interface Ctx {
  stack: Stack;
  store: E2eStore;
  adminPort: number;
  visitors: TestClient[];
  agents: TestClient[];
}
const api = async (ctx: Ctx, method: string, p: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${p}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
};
const consult = (id: string, text: string, shop = SHOP) =>
  `<message type='consult' to='${shop}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
/** The visitors' messages relayed to an agent, as "visitorN: text", in arrival order (notices left out). */
const relayed = (agent: TestClient) =>
  agent.received
    .filter((el: Element) => el.is('message') && el.attrs.type === 'consult' && el.getChild('body')?.attrs.msgType === '1')
    .map((el: Element) => `${String(el.attrs.realfrom).split('@')[0]}: ${el.getChildText('body')}`);
const acked = (id: string) => (el: Element) => el.attrs.type === 'mstat' && el.getChild('body')?.attrs.id === id;

for (const kind of DURABLE_STORES) {
  const e2e = suite<Ctx>(`e2e opening hours and left messages [${kind}]`);

  setUpSuite(e2e, async (ctx) => {
    ctx.store = await openStore(kind);
    ctx.adminPort = await freePort();
    ctx.stack = await startStack({
      domain: D,
      config: {
        systemJid: `admin@${D}`,
        store: ctx.store.url,
        admin: { port: ctx.adminPort, token: TOKEN },
        timers: { tickSec: 1 },
        shops: [
          {
            jid: SHOP,
            name: 'Hours shop',
            language: 'en',
            // Closed today and tomorrow (a midnight during the test cannot open it).
            hours: { timeZone: ZONE, weekly: ALL_DAY, exceptions: [{ date: shanghaiDay(0).date }, { date: shanghaiDay(1).date }] },
            agents: [
              { jid: `test01@${D}`, maxSessions: 5 },
              { jid: `test02@${D}`, maxSessions: 5 },
            ],
          },
          { jid: QUEUE_SHOP, name: 'Queue shop', language: 'en', queueMaxWaitSec: 2, agents: [{ jid: `test03@${D}`, maxSessions: 1 }] },
        ],
      },
      users: [...VISITORS, 'visitor5', 'visitor6', 'shop_2', 'test01', 'test02', 'test03'],
    });
    ctx.visitors = await Promise.all(VISITORS.map((v) => ctx.stack.connect(v, 'web')));
    ctx.agents = await Promise.all(['test01', 'test02'].map((a) => ctx.stack.connect(a, 'pc')));
  });

  e2e.after(async (ctx) => {
    try {
      await ctx.stack?.stop();
    } finally {
      await ctx.store?.stop();
    }
  });

  e2e('left while closed, kept across a SIGKILL, handed to two agents spread and in order when the shop opens', async (ctx) => {
    const { stack, visitors, agents } = ctx;
    const opens = shanghaiDay(2).start;
    for (const [i, visitor] of visitors.entries()) {
      for (const n of [1, 2]) await visitor.send(consult(`${VISITORS[i]}-${n}`, `${VISITORS[i]} message ${n}`));
      for (const n of [1, 2])
        await visitor.waitFor((el) => el.attrs.type === 'mstat' && el.getChild('body')?.attrs.id === `${VISITORS[i]}-${n}`);
      const closed = await visitor.waitFor((el) => el.getChild('left') !== undefined);
      assert.equal(
        [closed.attrs.from, closed.attrs.realfrom, closed.attrs.qchatid, closed.attrs.auto_reply, closed.getChild('body')?.attrs.msgType],
        [SHOP, SHOP, '5', 'true', '15'],
      );
      assert.equal(closed.getChild('left')!.attrs, {
        xmlns: 'urn:xmpp:consult:left:0',
        reason: 'closed',
        opens: String(opens),
        zone: ZONE,
      });
      assert.match(closed.getChildText('body')!, new RegExp(`we open at ${shanghaiDay(2).date} 00:00 \\(${ZONE}\\)`));
    }
    const left = await api(ctx, 'GET', `/left-messages?shop=${SHOP}`);
    assert.equal(
      left.json.map((l: { visitor: string; messages: { text: string }[] }) => [l.visitor, l.messages.map((m) => m.text)]),
      VISITORS.map((v) => [`${v}@${D}`, [`${v} message 1`, `${v} message 2`]]),
    );
    for (const agent of agents) await agent.settle();
    assert.equal(agents.map(relayed), [[], []], 'nothing reaches an agent while closed');

    await stack.sidecar.kill('SIGKILL');
    await stack.startSidecarAgain(30_000);
    await decidesShops(stack.sidecar, [SHOP, QUEUE_SHOP]); // on PostgreSQL once the killed one's leases ran out
    // The admin API answers 421 until the restarted sidecar holds the shop again: errors are retried.
    await waitUntil(
      'the left messages back after the restart',
      async () => (await api(ctx, 'GET', `/left-messages?shop=${SHOP}`)).json.length === 4,
    );

    // Open: the exceptions go (the weekly hours are all day).
    const patched = await api(ctx, 'PATCH', `/shops/${SHOP}`, { hours: { timeZone: ZONE, weekly: ALL_DAY } });
    assert.is(patched.status, 200, JSON.stringify(patched.json));
    await waitUntil('eight left messages relayed', () => relayed(agents[0]).length + relayed(agents[1]).length === 8);
    for (const agent of agents) await agent.settle();
    const [one, two] = agents.map(relayed);
    assert.equal([one.length, two.length], [4, 4], 'spread: two visitors each');
    assert.equal([...one, ...two].sort(), VISITORS.flatMap((v) => [`${v}: ${v} message 1`, `${v}: ${v} message 2`]).sort(), 'each once');
    for (const list of [one, two])
      for (const v of VISITORS) {
        const mine = list.filter((x) => x.startsWith(`${v}:`));
        if (mine.length) assert.equal(mine, [`${v}: ${v} message 1`, `${v}: ${v} message 2`], `${v} in order`);
      }
    const sessions = await api(ctx, 'GET', `/sessions?shop=${SHOP}`);
    assert.equal(sessions.json.length, 4);
    assert.equal((await api(ctx, 'GET', `/left-messages?shop=${SHOP}`)).json, []);
    for (const visitor of visitors)
      await visitor.waitFor((el) => el.attrs.auto_reply === 'true' && el.getChildText('body') === 'Hours shop');
  });

  e2e(
    'a visitor queued past queueMaxWaitSec is told, leaves the queue as abandoned, and its agent gets its messages once free',
    async (ctx) => {
      const { stack } = ctx;
      const [served, waiting, agent] = await Promise.all([
        stack.connect('visitor5', 'web'),
        stack.connect('visitor6', 'web'),
        stack.connect('test03', 'pc'),
      ]);
      await waitUntil('test03 online', async () => (await api(ctx, 'GET', `/agents/test03@${D}`)).json.resources?.length > 0);
      // test03 (maxSessions 1) serves visitor5; visitor6 waits.
      await served.send(consult('Q5-1', 'visitor5 message 1', QUEUE_SHOP));
      await agent.waitFor((el) => el.getChild('body')?.attrs.id === 'Q5-1');
      for (const n of [1, 2]) {
        await waiting.send(consult(`Q6-${n}`, `visitor6 message ${n}`, QUEUE_SHOP));
        await waiting.waitFor(acked(`Q6-${n}`));
      }
      const place = await waiting.waitFor(isNotice);
      assert.is(place.getChildText('body'), 'All our agents are busy. You are number 1 in the queue; please wait.');

      // Past 2 s in the queue: told, out of the queue, its messages a left message, the wait counted as abandoned.
      // (The queue is read only after that: a slow machine may take 2 s to get here.)
      const timedOut = await waiting.waitFor((el) => el.getChild('left') !== undefined, 20_000);
      assert.equal(
        [
          timedOut.attrs.from,
          timedOut.attrs.realfrom,
          timedOut.attrs.qchatid,
          timedOut.attrs.auto_reply,
          timedOut.getChild('body')?.attrs.msgType,
        ],
        [QUEUE_SHOP, QUEUE_SHOP, '5', 'true', '15'],
      );
      assert.equal(timedOut.getChild('left')!.attrs, { xmlns: 'urn:xmpp:consult:left:0', reason: 'timeout' });
      assert.is(
        timedOut.getChildText('body'),
        'Sorry, our agents are still busy. Your message has been kept and an agent will reply as soon as possible; you may also come back later.',
      );
      assert.equal((await api(ctx, 'GET', `/queue?shop=${QUEUE_SHOP}`)).json, [], 'out of the queue');
      const left = await api(ctx, 'GET', `/left-messages?shop=${QUEUE_SHOP}`);
      assert.equal(
        left.json.map((l: { visitor: string; reason: string; messages: { text: string }[] }) => [
          l.visitor,
          l.reason,
          l.messages.map((m) => m.text),
        ]),
        [[`visitor6@${D}`, 'timeout', ['visitor6 message 1', 'visitor6 message 2']]],
      );
      const abandoned = await api(ctx, 'GET', `/queue/abandoned?shop=${QUEUE_SHOP}`);
      assert.equal(
        abandoned.json.map((a: { shop: string; reason: string; count: number }) => [a.shop, a.reason, a.count]),
        [[QUEUE_SHOP, 'timeout', 1]],
      );
      const metrics = await (await fetch(`http://127.0.0.1:${ctx.adminPort}/metrics`)).text();
      assert.match(metrics, new RegExp(`consult_queue_abandoned_total\\{shop="${QUEUE_SHOP}",group="[^"]*",reason="timeout"\\} 1\n`));
      await agent.settle();
      assert.equal(relayed(agent), ['visitor5: visitor5 message 1'], 'nothing of visitor6 while test03 is busy');

      // test03 closes visitor5's session: the timers give it visitor6's left message, each message once and in order.
      await agent.send(`<message type='chat' to='${QUEUE_SHOP}' realto='visitor5@${D}'><body id='Q-close'>/close</body></message>`);
      await waitUntil('visitor6 message 2 relayed to test03', () => relayed(agent).includes('visitor6: visitor6 message 2'));
      const told = agent.received.find((el: Element) => isNotice(el) && el.getChild('left') !== undefined);
      assert.ok(told, 'test03 is told the message was left');
      assert.is(told!.attrs.realfrom, `visitor6@${D}`);
      assert.is(told!.getChild('left')!.attrs.reason, 'timeout');
      await waiting.waitFor((el) => el.attrs.auto_reply === 'true' && el.getChildText('body') === 'Queue shop'); // the welcome
      await agent.settle();
      assert.equal(relayed(agent), ['visitor5: visitor5 message 1', 'visitor6: visitor6 message 1', 'visitor6: visitor6 message 2']);
      assert.equal((await api(ctx, 'GET', `/left-messages?shop=${QUEUE_SHOP}`)).json, []);
      const sessions = await api(ctx, 'GET', `/sessions?shop=${QUEUE_SHOP}`);
      assert.equal(
        sessions.json.map((s: { visitor: string; agent: string }) => [s.visitor, s.agent]),
        [[`visitor6@${D}`, `test03@${D}`]],
      );
    },
  );

  e2e.run();
}
