// End to end: opening hours with left messages. Debian's ejabberd with mod_consult, the real sidecar process on a
// PGlite store, real XMPP clients. The shop is closed today and tomorrow by dated exceptions (in Asia/Shanghai):
// visitors' messages are acked and kept as left messages, each visitor told when the shop opens. The sidecar is
// SIGKILLed while they wait and started again; then the admin API removes the exceptions, the shop is open, and the
// left messages reach the two agents spread, each visitor's in order, every message once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import type { Element, TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
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
  dataDir: string;
  adminPort: number;
  visitors: TestClient[];
  agents: TestClient[];
}
const e2e = suite<Ctx>('e2e opening hours and left messages');

setUpSuite(e2e, async (ctx) => {
  ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-pglite-'));
  ctx.adminPort = await freePort();
  ctx.stack = await startStack({
    domain: D,
    config: {
      systemJid: `admin@${D}`,
      store: `pglite:${ctx.dataDir}`,
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
      ],
    },
    users: [...VISITORS, 'shop_2', 'test01', 'test02'],
  });
  ctx.visitors = await Promise.all(VISITORS.map((v) => ctx.stack.connect(v, 'web')));
  ctx.agents = await Promise.all(['test01', 'test02'].map((a) => ctx.stack.connect(a, 'pc')));
});

e2e.after(async (ctx) => {
  await ctx.stack?.stop();
  if (ctx.dataDir) fs.rmSync(ctx.dataDir, { recursive: true, force: true });
});

const api = async (ctx: Ctx, method: string, p: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${p}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
};
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
/** The visitors' messages relayed to an agent, as "visitorN: text", in arrival order (notices left out). */
const relayed = (agent: TestClient) =>
  agent.received
    .filter((el: Element) => el.is('message') && el.attrs.type === 'consult' && el.getChild('body')?.attrs.msgType === '1')
    .map((el: Element) => `${String(el.attrs.realfrom).split('@')[0]}: ${el.getChildText('body')}`);

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
    assert.equal(closed.getChild('left')!.attrs, { xmlns: 'urn:xmpp:consult:left:0', reason: 'closed', opens: String(opens), zone: ZONE });
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
  for (const visitor of visitors) await visitor.waitFor((el) => el.attrs.auto_reply === 'true' && el.getChildText('body') === 'Hours shop');
});

e2e.run();
