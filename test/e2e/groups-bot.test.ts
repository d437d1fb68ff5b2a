// End to end through Debian's ejabberd with mod_consult and the real sidecar process: a product
// routed to its group, bot first with a hand-over to a human (the bot is a real HTTP server here),
// a dead bot falling back, a rating after a close, and the archive searched and exported through
// the admin API.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import type { Element, TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`; // groups
const BOT_SHOP = `shop_4@${D}`; // bot first, a live bot
const DEAD_SHOP = `shop_5@${D}`; // bot first, nothing listening
const TOKEN = 'e2e-admin-token-groups-bot'; // at least 16 characters

interface Ctx {
  stack: Stack;
  bot: Server;
  botAsked: { text: string; history: { role: string; text: string }[] }[];
  adminPort: number;
  connect(user: string, resource?: string): Promise<TestClient>;
  clients: TestClient[];
}
const e2e = suite<Ctx>('e2e groups, bot, archive and rating through ejabberd');

setUpSuite(e2e, async (ctx) => {
  ctx.botAsked = [];
  ctx.bot = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    const asked = JSON.parse(body);
    ctx.botAsked.push(asked);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ text: `机器人: ${asked.text}` }));
  });
  await new Promise<void>((r) => ctx.bot.listen(0, '127.0.0.1', r));
  const botUrl = `http://127.0.0.1:${(ctx.bot.address() as AddressInfo).port}/bot`;
  ctx.adminPort = await freePort();
  ctx.stack = await startStack({
    domain: D,
    config: {
      systemJid: `admin@${D}`,
      admin: { port: ctx.adminPort, token: TOKEN },
      archive: { ratingWindowSec: 600 },
      shops: [
        {
          jid: SHOP,
          name: '张滨测试店铺',
          agents: [
            { jid: `test01@${D}`, maxSessions: 5 },
            { jid: `test02@${D}`, maxSessions: 5 },
          ],
          groups: [
            { name: 'front', isDefault: true, agents: [`test01@${D}`] },
            { name: 'tv', agents: [`test02@${D}`], products: ['sku-tv'] },
          ],
        },
        {
          jid: BOT_SHOP,
          name: 'Bot shop',
          bot: { mode: 'bot-first', url: botUrl, timeoutMs: 2000, retries: 0 },
          agents: [{ jid: `test03@${D}`, maxSessions: 5 }],
        },
        {
          jid: DEAD_SHOP,
          name: 'Dead bot shop',
          bot: { mode: 'bot-first', url: 'http://127.0.0.1:1/bot', timeoutMs: 500, retries: 1 },
          agents: [{ jid: `test03@${D}`, maxSessions: 5 }],
        },
      ],
    },
    shimOptions: { timeout: 2000, failure_policy: 'reject' },
    users: ['visitor1', 'visitor2', 'visitor3', 'visitor4', 'shop_2', 'shop_4', 'shop_5', 'test01', 'test02', 'test03'],
  });
  ctx.clients = [];
  ctx.connect = async (username, resource = 'pc') => {
    const c = await ctx.stack.connect(username, resource);
    ctx.clients.push(c);
    return c;
  };
});

e2e.after(async (ctx) => {
  await ctx.stack?.stop();
  ctx.bot?.closeAllConnections();
  await new Promise((r) => (ctx.bot ? ctx.bot.close(r) : r(undefined)));
});

const consult = (shop: string, id: string, text: string, extra: Record<string, string> = {}, msgType = '1') => {
  const channel = JSON.stringify({ cn: 'consult', d: 'send', usrType: 'usr', ...extra }).replace(/"/g, '&quot;');
  return `<message type='consult' to='${shop}' channelid="${channel}" qchatid='4' isHiddenMsg='0'><body msgType='${msgType}' maType='6' id='${id}'>${text}</body></message>`;
};
const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const mstat = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
const text = (t: string) => (el: Element) => el.getChildText('body') === t;
const api = async (ctx: Ctx, method: string, p: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${p}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
};

e2e('a consult naming a product goes to the agent of its group; one naming none to the default group', async (ctx) => {
  const [agent1, agent2] = await Promise.all([ctx.connect('test01'), ctx.connect('test02')]);
  const [v1, v2] = await Promise.all([ctx.connect('visitor1', 'web'), ctx.connect('visitor2', 'web')]);
  await v1.send(consult(SHOP, 'TV-1', '电视坏了', { pid: 'sku-tv' }));
  await v1.waitFor(mstat('TV-1'));
  const got = await agent2.waitFor(bodyId('TV-1'));
  assert.equal([got.attrs.from, got.attrs.realfrom, got.attrs.qchatid], [SHOP, `visitor1@${D}`, '4']);
  await v2.send(consult(SHOP, 'ANY-1', '你好'));
  await agent1.waitFor(bodyId('ANY-1'));
  // ANY-1 is the marker for agent1: a copy of TV-1 would have been routed to it before TV-1 reached agent2.
  assert.is(agent1.received.some(bodyId('TV-1')), false, 'the tv question only reached the tv group');
  await agent2.settle(); // a copy of ANY-1 for agent2 was routed before ANY-1 reached agent1
  assert.is(agent2.received.some(bodyId('ANY-1')), false, 'the other question only reached the default group');
});

e2e('bot first: the bot answers as msgType 47; "人工" hands over to a human with the bot conversation', async (ctx) => {
  const agent3 = await ctx.connect('test03');
  const v3 = await ctx.connect('visitor3', 'web');
  await v3.send(consult(BOT_SHOP, 'B-1', '几点开门?'));
  await v3.waitFor(mstat('B-1'));
  const answer = await v3.waitFor(text('机器人: 几点开门?'));
  assert.equal(
    [answer.attrs.from, answer.attrs.type, answer.attrs.qchatid, answer.getChild('body')!.attrs.msgType],
    [BOT_SHOP, 'consult', '5', '47'],
  );
  await agent3.settle(); // anything for the agent about B-1 was routed before the bot's answer
  assert.is(agent3.received.some(bodyId('B-1')), false, 'the agent is not bothered while the bot answers');
  assert.equal(ctx.botAsked.at(-1)!.text, '几点开门?');

  await v3.send(consult(BOT_SHOP, 'B-2', '人工'));
  await v3.waitFor(mstat('B-2'));
  await v3.waitFor((el) => (el.getChildText('body') ?? '').includes('人工客服'));
  const heading = await agent3.waitFor((el) => (el.getChildText('body') ?? '').includes('智能客服的对话'));
  assert.is(heading.attrs.realfrom, `visitor3@${D}`);
  const past = [
    await agent3.waitFor(text('几点开门?')),
    await agent3.waitFor(text('机器人: 几点开门?')),
    await agent3.waitFor(text('人工')),
  ];
  assert.ok(
    past.every((m) => m.getChild('delay', 'urn:xmpp:delay')),
    'the bot conversation, marked as history',
  );

  await agent3.send(`<message to="${BOT_SHOP}" type="chat"><body id="H-1" msgType="1">人工客服为您服务</body></message>`);
  const reply = await v3.waitFor(bodyId('H-1'));
  assert.equal([reply.attrs.realfrom, reply.attrs.qchatid], [`test03@${D}`, '5']);
});

e2e('a dead bot: the visitor is told and handed to a human, who gets the question', async (ctx) => {
  const agent3 = ctx.clients.find((c) => c.bareJid === `test03@${D}`)!;
  const v4 = await ctx.connect('visitor4', 'web');
  await v4.send(consult(DEAD_SHOP, 'D-1', '有人吗'));
  await v4.waitFor(mstat('D-1'));
  await v4.waitFor((el) => (el.getChildText('body') ?? '').includes('暂时无法回答'), 15_000);
  const q = await agent3.waitFor((el) => bodyId('D-1')(el) && el.attrs.from === DEAD_SHOP, 15_000);
  assert.is(q.attrs.realfrom, `visitor4@${D}`);
});

e2e('close, rating request, a "5" stored with the archived session; archive searched and exported', async (ctx) => {
  const agent1 = ctx.clients.find((c) => c.bareJid === `test01@${D}`)!;
  const v2 = ctx.clients.find((c) => c.bareJid === `visitor2@${D}`)!;
  await agent1.send(`<message to="${SHOP}" type="chat"><body id="R-1" msgType="1">请问还有问题吗</body></message>`);
  await v2.waitFor(bodyId('R-1'));
  await agent1.send(`<message to="${SHOP}" type="chat"><body id="C-1">/close</body></message>`);
  const request = await v2.waitFor((el) => el.getChild('rating', 'urn:xmpp:consult:rating:0') !== undefined);
  assert.equal(
    [request.attrs.from, request.attrs.qchatid, request.attrs.no_update_msg_log, request.getChild('body')!.attrs.msgType],
    [SHOP, '5', 'true', '15'],
  );
  const rating = request.getChild('rating', 'urn:xmpp:consult:rating:0')!;
  assert.equal([rating.attrs.min, rating.attrs.max], ['1', '5']);
  await v2.send(`<message type='chat' to='${SHOP}'><body id='RATE-1'>5</body></message>`);
  await v2.waitFor(mstat('RATE-1'));
  await v2.waitFor((el) => (el.getChildText('body') ?? '').includes('感谢您的评价'));
  await agent1.settle(); // the rating, had it been relayed, was routed before the thanks
  assert.is(agent1.received.some(text('5')), false, 'a rating is not routed to an agent');

  type Archived = { id: string; rating?: number; lines: { role: string; text: string }[] };
  let found: Archived[] = [];
  // The archive is written after the close is durable, and the rating after that.
  await waitUntil('the archived session with its rating', async () => {
    found = (JSON.parse((await api(ctx, 'GET', `/archive?shop=${SHOP}&visitor=visitor2@${D}`)).text) as { items: Archived[] }).items;
    return Boolean(found[0]?.rating);
  });
  assert.is(found.length, 1);
  assert.is(found[0].rating, 5);
  assert.equal(
    found[0].lines.map((l) => [l.role, l.text]),
    [
      ['visitor', '你好'],
      ['agent', '请问还有问题吗'],
    ],
  );
  const csv = await api(ctx, 'GET', `/archive?agent=test01@${D}&format=csv`);
  assert.is(csv.status, 200);
  assert.match(csv.type ?? '', 'text/csv');
  assert.match(csv.text, `${found[0].id},${SHOP},visitor2@${D},test01@${D}`);
  assert.match(csv.text, '请问还有问题吗');
  const metrics = (await fetch(`http://127.0.0.1:${ctx.adminPort}/metrics`)).text();
  assert.match(await metrics, `consult_csat_ratio{shop="${SHOP}",agent="test01@${D}"} 1`);
});

e2e.run();
