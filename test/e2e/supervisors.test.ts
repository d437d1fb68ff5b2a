// End to end: a shop's supervisor with a plain XMPP client, through a real ejabberd with the shim and the real
// sidecar, one suite on PGlite and one on PostgreSQL. It lists the shop (/live), monitors a session (a marked copy of both directions, still after a
// SIGKILL of the sidecar, none doubled), whispers to the agent (the visitor receives nothing), and takes the session
// over (then serves the visitor itself). An agent who tries the same is refused with forbidden.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DURABLE_STORES, decidesShops, type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { type Element, isAck, type TestClient } from '../support/xmpp.js';

const SHOP = 'shop_2@localhost';
const NS = 'urn:xmpp:consult:supervisor:0';

interface Ctx {
  stack: Stack;
  store: E2eStore;
  visitor: TestClient;
  agent: TestClient;
  other: TestClient;
  sue: TestClient;
}

const bodyOf = (el: Element) => el.getChildText('body') ?? '';
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const chat = (id: string, text: string, realto?: string) =>
  `<message type='chat' to='${SHOP}'${realto ? ` realto='${realto}'` : ''}><body id='${id}'>${text}</body></message>`;
const copyOf = (text: string) => (el: Element) => el.getChild('monitored', NS) !== undefined && bodyOf(el).endsWith(text);

for (const kind of DURABLE_STORES) {
  const sup = suite<Ctx>(`supervisors through ejabberd [${kind}]`);

  setUpSuite(sup, async (ctx) => {
    ctx.store = await openStore(kind);
    ctx.stack = await startStack({
      config: {
        store: ctx.store.url,
        systemJid: 'admin@localhost',
        timers: { tickSec: 1 },
        shops: [
          {
            jid: SHOP,
            name: 'Supervised shop',
            language: 'en',
            supervisors: ['sue@localhost'],
            agents: [
              { jid: 'test01@localhost', maxSessions: 5 },
              { jid: 'test02@localhost', maxSessions: 5, status: 'dnd' },
            ],
          },
        ],
      },
      users: ['visitor1', 'test01', 'test02', 'sue'],
    });
    ctx.agent = await ctx.stack.connect('test01', 'desk');
    ctx.other = await ctx.stack.connect('test02', 'desk');
    ctx.sue = await ctx.stack.connect('sue', 'pc');
    ctx.visitor = await ctx.stack.connect('visitor1', 'web');
    await ctx.visitor.send(consult('v1', 'hello'));
    await ctx.visitor.waitFor(isAck('v1'));
    await ctx.agent.waitFor((el) => bodyOf(el) === 'hello');
  });

  sup.after(async (ctx) => {
    try {
      await ctx.stack?.stop();
    } finally {
      await ctx.store?.stop();
    }
  });

  sup('/live lists the session; /monitor copies both directions, marked, and goes on after a SIGKILL without doubles', async (ctx) => {
    await ctx.sue.send(chat('l1', '/live'));
    const live = await ctx.sue.waitFor((el) => el.getChild('live', NS) !== undefined);
    assert.is(live.getChild('live', NS)!.attrs.sessions, '1');
    assert.match(bodyOf(live), 'visitor1@localhost → test01@localhost');

    await ctx.sue.send(chat('mo1', '/monitor visitor1'));
    await ctx.sue.waitFor((el) => bodyOf(el).includes('You are monitoring'));
    await ctx.visitor.send(consult('v2', 'where is my parcel?'));
    await ctx.agent.waitFor((el) => bodyOf(el) === 'where is my parcel?');
    const copy = await ctx.sue.waitFor(copyOf('where is my parcel?'));
    assert.is(copy.getChild('monitored', NS)!.attrs.from, 'visitor');
    assert.is(bodyOf(copy), '[visitor1@localhost → test01@localhost] where is my parcel?');

    await ctx.stack.sidecar.kill('SIGKILL');
    await ctx.stack.startSidecarAgain();
    await decidesShops(ctx.stack.sidecar, [SHOP]); // on PostgreSQL once the killed one's leases ran out
    await ctx.agent.send(chat('a1', 'it left this morning', 'visitor1@localhost'));
    await ctx.visitor.waitFor((el) => bodyOf(el) === 'it left this morning');
    const back = await ctx.sue.waitFor(copyOf('it left this morning'));
    assert.is(back.getChild('monitored', NS)!.attrs.from, 'agent');
    await ctx.sue.settle();
    assert.is(ctx.sue.received.filter(copyOf('where is my parcel?')).length, 1, 'nothing copied twice');
    assert.is(ctx.visitor.received.filter((el) => bodyOf(el) === 'it left this morning').length, 1);
  });

  sup('/whisper reaches only the agent; an agent may not supervise; /takeover hands the visitor to the supervisor', async (ctx) => {
    await ctx.sue.send(chat('w1', '/whisper visitor1 offer free shipping'));
    await ctx.agent.waitFor((el) => el.getChild('whisper', NS) !== undefined && bodyOf(el).includes('offer free shipping'));
    await ctx.other.send(chat('x1', '/takeover visitor1'));
    const refused = await ctx.other.waitFor((el) => el.attrs.type === 'error');
    assert.ok(refused.getChild('error')?.getChild('forbidden', 'urn:ietf:params:xml:ns:xmpp-stanzas'), 'forbidden');

    await ctx.sue.send(chat('t1', '/takeover visitor1'));
    await ctx.visitor.waitFor((el) => bodyOf(el).includes('sue@localhost'));
    await ctx.sue.send(chat('s1', 'Hello, I am the supervisor', 'visitor1@localhost'));
    const fromSue = await ctx.visitor.waitFor((el) => bodyOf(el) === 'Hello, I am the supervisor');
    assert.is(fromSue.attrs.from, SHOP);
    assert.is(fromSue.attrs.realfrom, 'sue@localhost');
    await ctx.visitor.settle();
    assert.not.ok(
      ctx.visitor.received.some((el) => bodyOf(el).includes('offer free shipping')),
      'the visitor never saw the whisper',
    );
  });

  sup.run();
}
