import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { runConsultctl } from '../support/consultctl.js';
import { DURABLE_STORES, type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { type Element, bodyId, isAck, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const AGENT = `test01@${D}`;
const OTHER = `test02@${D}`;
const VISITOR = `visitor1@${D}`;
const TOKEN = 'e2e-admin-token-visitor-context';
const NS_CONTEXT = 'urn:xmpp:consult:context:0';
const NS_HISTORY = 'urn:xmpp:consult:history:0';
const NS_INFO = 'urn:xmpp:consult:agent:0';
const CHANNEL =
  '{&quot;cn&quot;:&quot;consult&quot;,&quot;d&quot;:&quot;send&quot;,&quot;usrType&quot;:&quot;usr&quot;,&quot;pid&quot;:&quot;p1&quot;,&quot;order&quot;:&quot;A-1001&quot;}';

const bodyOf = (el: Element) => el.getChildText('body') ?? '';
/** A context element's entries as [name, value], in order. */
const entries = (c: Element | undefined) =>
  (c?.children ?? []).filter((x): x is Element => typeof x !== 'string').map((x) => [String(x.attrs.var ?? x.name), x.getText()]);
const chat = (id: string, text: string, realto?: string) =>
  `<message type='chat' to='${SHOP}'${realto ? ` realto='${realto}'` : ''}><body id='${id}'>${text}</body></message>`;

interface Archived {
  id: string;
  visitor: string;
  context?: Record<string, unknown>;
}

interface Ctx {
  stack: Stack;
  store: E2eStore;
  adminPort: number;
  visitor: TestClient;
  agent: TestClient;
  other: TestClient;
}

const api = async <T>(ctx: Ctx, path: string) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, json: (await res.json()) as T };
};
const archived = (ctx: Ctx, query: string) => api<{ items: Archived[] }>(ctx, `/archive?${query}`);

/** consultctl against the sidecar's admin API. */
const ctl = (ctx: Ctx, args: string[]) => runConsultctl(`http://127.0.0.1:${ctx.adminPort}`, TOKEN, args);

for (const kind of DURABLE_STORES) {
  const e2e = suite<Ctx>(`e2e visitor context and /history through ejabberd [${kind}]`);

  setUpSuite(e2e, async (ctx) => {
    ctx.store = await openStore(kind);
    ctx.adminPort = await freePort();
    ctx.stack = await startStack({
      domain: D,
      config: {
        store: ctx.store.url,
        systemJid: `admin@${D}`,
        admin: { port: ctx.adminPort, token: TOKEN },
        shops: [
          {
            jid: SHOP,
            name: 'Context shop',
            language: 'en',
            agents: [
              { jid: AGENT, maxSessions: 5 },
              { jid: OTHER, maxSessions: 5, status: 'dnd' }, // no chats until it sets /status standard
            ],
          },
        ],
      },
      users: ['visitor1', 'test01', 'test02'],
    });
    ctx.agent = await ctx.stack.connect('test01', 'pc');
    ctx.other = await ctx.stack.connect('test02', 'pc');
    ctx.visitor = await ctx.stack.connect('visitor1', 'web');
  });

  e2e.after(async (ctx) => {
    try {
      await ctx.stack?.stop();
    } finally {
      await ctx.store?.stop();
    }
  });

  e2e('the agent gets the server’s structured child and a readable notice; /sessions lists the context', async (ctx) => {
    await ctx.visitor.send(
      `<message type='consult' to='${SHOP}' channelid='${CHANNEL}'><body msgType='1' maType='6' id='CTX-1'>hello</body>` +
        `<context xmlns='${NS_CONTEXT}'><name>Ann Lee</name><email>ann@example.com</email><field var='plan'>gold</field></context></message>`,
    );
    await ctx.visitor.waitFor(isAck('CTX-1'));
    const relayed = await ctx.agent.waitFor(bodyId('CTX-1'));
    const children = relayed.getChildren('context', NS_CONTEXT);
    assert.is(children.length, 1, 'the server’s child only, not the visitor’s too');
    assert.equal(entries(children[0]), [
      ['name', 'Ann Lee'],
      ['email', 'ann@example.com'],
      ['order', 'A-1001'],
      ['plan', 'gold'],
    ]);
    assert.is(relayed.attrs.realfrom, VISITOR);
    const told = await ctx.agent.waitFor((el) => bodyOf(el).startsWith('About visitor'));
    assert.is(bodyOf(told), `About visitor ${VISITOR}: name: Ann Lee; email: ann@example.com; order: A-1001; plan: gold`);
    assert.is(told.getChild('body')!.attrs.msgType, '15');
    assert.ok(told.getChild('context', NS_CONTEXT), 'the notice carries the child too');

    await ctx.agent.send(chat('S-1', '/sessions'));
    const info = await ctx.agent.waitFor((el) => el.getChild('info', NS_INFO) !== undefined);
    const session = info.getChild('info', NS_INFO)!.getChild('session')!;
    assert.is(session.attrs.visitor, VISITOR);
    assert.equal(entries(session.getChild('context', NS_CONTEXT))[0], ['name', 'Ann Lee']);
    assert.match(bodyOf(info), `${VISITOR}: name: Ann Lee; email: ann@example.com; order: A-1001; plan: gold`);

    const sessions = await api<{ visitor: string; context?: unknown }[]>(ctx, `/sessions?shop=${SHOP}`);
    assert.is(sessions.status, 200);
    assert.equal(
      sessions.json.map((x) => [x.visitor, x.context]),
      [[VISITOR, { name: 'Ann Lee', email: 'ann@example.com', order: 'A-1001', fields: { plan: 'gold' } }]],
    );
  });

  e2e('an update reaches the agent; a transfer gives the context to the next agent', async (ctx) => {
    await ctx.visitor.send(
      `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='CTX-U'>my phone</body>` +
        `<context xmlns='${NS_CONTEXT}'><phone>+44 20 7946 0000</phone></context></message>`,
    );
    const updated = await ctx.agent.waitFor(bodyId('CTX-U'));
    assert.equal(entries(updated.getChild('context', NS_CONTEXT))[2], ['phone', '+44 20 7946 0000']);
    await ctx.other.send(chat('ST-1', '/status standard'));
    await ctx.other.waitFor((el) => bodyOf(el).includes('Your status is now standard'));
    await ctx.agent.send(chat('T-1', `/transfer ${OTHER}`, VISITOR));
    const told = await ctx.other.waitFor((el) => el.getChild('context', NS_CONTEXT) !== undefined);
    assert.is(told.attrs.realfrom, VISITOR);
    assert.is(
      bodyOf(told),
      `About visitor ${VISITOR}: name: Ann Lee; email: ann@example.com; phone: +44 20 7946 0000; order: A-1001; plan: gold`,
    );
  });

  e2e('after the close GET /archive?context= finds the session; /history in the next session answers from the archive', async (ctx) => {
    await ctx.other.send(chat('C-1', '/close', VISITOR));
    await ctx.visitor.waitFor((el) => bodyOf(el).includes('This conversation has ended'));
    const found = await waitUntil('the session archived and found by its context', async () => {
      const r = await archived(ctx, `shop=${SHOP}&context=a-1001`);
      return r.status === 200 && r.json.items.length === 1 ? r.json.items : undefined;
    });
    assert.is(found[0].visitor, VISITOR);
    const context = { name: 'Ann Lee', email: 'ann@example.com', phone: '+44 20 7946 0000', order: 'A-1001', fields: { plan: 'gold' } };
    assert.equal(found[0].context, context);
    const none = await archived(ctx, `shop=${SHOP}&context=silver`);
    assert.equal([none.status, none.json.items.length], [200, 0]);
    const bad = await archived(ctx, `shop=${SHOP}&context=`);
    assert.is(bad.status, 400, 'an empty context filter is refused');
    const byCtl = await ctl(ctx, ['archive', '--shop', SHOP, '--context', 'PLAN GOLD']);
    assert.is(byCtl.code, 0, byCtl.stderr);
    assert.equal(
      (JSON.parse(byCtl.stdout) as Archived[]).map((r) => [r.id, r.context]),
      [[found[0].id, context]],
    );
    await ctx.other.send(chat('ST-2', '/status dnd')); // the next consult goes to test01
    await ctx.other.waitFor((el) => bodyOf(el).includes('Your status is now dnd'));

    await ctx.visitor.send(`<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='CTX-2'>back again</body></message>`);
    await ctx.agent.waitFor(bodyId('CTX-2'));
    await ctx.agent.send(chat('H-1', '/history', VISITOR));
    const answer = await ctx.agent.waitFor((el) => el.getChild('history', NS_HISTORY) !== undefined);
    const history = answer.getChild('history', NS_HISTORY)!;
    assert.equal([history.attrs.visitor, history.attrs.sessions], [VISITOR, '1']);
    const earlier = history.getChild('session')!;
    assert.equal([earlier.attrs.id, earlier.attrs.agent, earlier.getChildText('first')], [found[0].id, OTHER, 'hello']);
    assert.match(bodyOf(answer), `Earlier sessions of ${VISITOR} (1):`);
    await ctx.visitor.settle();
    assert.not.ok(
      ctx.visitor.received.some((el) => bodyOf(el).includes('/history') || el.getChild('history', NS_HISTORY)),
      'the visitor sees nothing of it',
    );
  });

  e2e.run();
}
