// Answer or move on through Debian's ejabberd with mod_consult, the real sidecar process and real XMPP clients, one
// suite on PGlite and one on PostgreSQL: an assigned agent that sends nothing within the shop's answerTimeoutSec loses the visitor to the next agent,
// who gets the history; the visitor sees one notice. And a sidecar SIGKILLed while an answer clock runs: after the
// restart the clock still fires, once.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { DURABLE_STORES, decidesShops, type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { bodyId, type Element, isNotice, marker } from '../support/xmpp.js';

const D = 'localhost';
const DAY_SHOP = `shop_2@${D}`;
const NIGHT_SHOP = `shop_3@${D}`;
const TOKEN = 'e2e-admin-token-answer-timeout';

interface Ctx {
  stack: Stack;
  store: E2eStore;
  adminPort: number;
}

const consult = (shop: string, id: string, text: string) =>
  `<message type='consult' to='${shop}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const history = (id: string) => (el: Element) => bodyId(id)(el) && el.getChild('delay') !== undefined;
const api = async (ctx: Ctx, p: string) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return (await res.json()) as Record<string, unknown> & unknown[];
};

for (const kind of DURABLE_STORES) {
  const e2e = suite<Ctx>(`e2e answer or move on [${kind}]`);

  setUpSuite(e2e, async (ctx) => {
    ctx.store = await openStore(kind);
    ctx.adminPort = await freePort();
    const shop = (jid: string, name: string, agents: string[]) => ({
      jid,
      name,
      language: 'en',
      answerTimeoutSec: 2,
      agents: agents.map((a) => ({ jid: `${a}@${D}`, maxSessions: 5 })),
    });
    ctx.stack = await startStack({
      domain: D,
      config: {
        systemJid: `admin@${D}`,
        store: ctx.store.url,
        admin: { port: ctx.adminPort, token: TOKEN },
        metrics: { port: await freePort() },
        timers: { tickSec: 1 },
        shops: [shop(DAY_SHOP, 'Day shop', ['test01', 'test02']), shop(NIGHT_SHOP, 'Night shop', ['test03', 'test04'])],
      },
      shimOptions: { timeout: 2000, failure_policy: 'reject', breaker_cooldown: 500 },
      users: ['visitor1', 'visitor2', 'test01', 'test02', 'test03', 'test04'],
    });
  });

  e2e.after(async (ctx) => {
    try {
      await ctx.stack?.stop();
    } finally {
      await ctx.store?.stop();
    }
  });

  e2e('a silent agent loses the visitor to the next agent, who gets the history; the visitor sees one notice', async (ctx) => {
    const { stack } = ctx;
    const [visitor, silent, next] = await Promise.all([stack.connect('visitor1', 'web'), stack.connect('test01'), stack.connect('test02')]);
    await visitor.send(consult(DAY_SHOP, 'A-1', 'my parcel is late'));
    const first = await silent.waitFor(bodyId('A-1'));
    assert.is(first.attrs.realfrom, `visitor1@${D}`);

    // test01 says nothing: after 2 s the timers give the visitor to test02, with the conversation so far.
    const heading = await next.waitFor(
      (el) => isNotice(el) && (el.getChildText('body') ?? '').includes(`test01@${D} did not answer within 2 s`),
      20_000,
    );
    assert.is(heading.attrs.realfrom, `visitor1@${D}`);
    const replayed = await next.waitFor(history('A-1'));
    assert.is(replayed.getChildText('body'), 'my parcel is late');
    const told = await silent.waitFor(isNotice);
    assert.is(told.getChildText('body'), `You did not answer visitor1@${D} within 2 s; the conversation now belongs to test02@${D}.`);

    // test02 answers: the reply reaches the visitor from test02.
    await next.send(
      `<message type='chat' to='${DAY_SHOP}' realto='visitor1@${D}'><body id='B-1' msgType='1'>Let me check</body></message>`,
    );
    const reply = await visitor.waitFor(bodyId('B-1'));
    assert.is(reply.attrs.realfrom, `test02@${D}`);
    await visitor.settle();
    const notices = visitor.received.filter(isNotice);
    assert.equal(
      notices.map((n) => [n.attrs.from, n.attrs.realfrom, n.attrs.qchatid, n.getChildText('body')]),
      [[DAY_SHOP, `test02@${D}`, '5', `Agent test01@${D} could not answer in time; agent test02@${D} will help you now.`]],
    );
    await marker(visitor, silent);
    assert.is(silent.received.filter(isNotice).length, 1, 'test01 is told once');

    const agent = await api(ctx, `/agents/test01@${D}`);
    assert.equal((agent.shops as { shop: string; missedChats: number }[]).find((s) => s.shop === DAY_SHOP)!.missedChats, 1);
    const metrics = await (await fetch(`http://127.0.0.1:${ctx.adminPort}/metrics`)).text();
    assert.match(metrics, `consult_missed_chats_total{shop="${DAY_SHOP}"} 1`);
  });

  e2e('SIGKILL while an answer clock runs: after the restart it fires once, nothing doubled', async (ctx) => {
    const { stack } = ctx;
    const [visitor, silent, next] = await Promise.all([stack.connect('visitor2', 'web'), stack.connect('test03'), stack.connect('test04')]);
    await visitor.send(consult(NIGHT_SHOP, 'K-1', 'is anyone there?'));
    await silent.waitFor(bodyId('K-1'));
    await stack.sidecar.kill('SIGKILL'); // test03's clock runs: it is in the journal, not in the process
    await stack.startSidecarAgain(30_000);
    await decidesShops(stack.sidecar, [DAY_SHOP, NIGHT_SHOP]); // on PostgreSQL once the killed one's leases ran out

    const replayed = await next.waitFor(history('K-1'), 30_000);
    assert.is(replayed.getChildText('body'), 'is anyone there?');
    await next.send(`<message type='chat' to='${NIGHT_SHOP}' realto='visitor2@${D}'><body id='N-1' msgType='1'>Hello!</body></message>`);
    await visitor.waitFor(bodyId('N-1'));

    // Moved once: test04's answer stopped its clock (durable before the reply left), so the state now is final.
    const sessions = (await api(ctx, `/sessions?shop=${NIGHT_SHOP}`)) as { visitor: string; agent: string; silentMoves?: number }[];
    const session = sessions.find((s) => s.visitor === `visitor2@${D}`)!;
    assert.equal([session.agent, session.silentMoves], [`test04@${D}`, 1], 'one silent move');
    const agent = await api(ctx, `/agents/test03@${D}`);
    assert.equal((agent.shops as { shop: string; missedChats: number }[]).find((s) => s.shop === NIGHT_SHOP)!.missedChats, 1);
    const metrics = await (await fetch(`http://127.0.0.1:${ctx.adminPort}/metrics`)).text();
    assert.match(metrics, `consult_missed_chats_total{shop="${NIGHT_SHOP}"} 1`, 'counted by the restarted sidecar, once');

    await visitor.settle();
    assert.is(visitor.received.filter(isNotice).length, 1, 'the visitor sees one notice');
    await marker(next, silent);
    assert.is(silent.received.filter(isNotice).length, 1, 'test03 is told once');
    await marker(visitor, next);
    assert.is(next.received.filter(history('K-1')).length, 1, 'test04 gets the history once');
  });

  e2e.run();
}
