import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { runConsultctl } from '../support/consultctl.js';
import { DURABLE_STORES, decidesShops, type E2eStore, openStore, shimRoutes } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { type Element, isAck, isBounce, isNotice, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const VISITOR = `visitor1@${D}`;
const TOKEN = 'canned-tags-e2e-admin-token';
const NOTE = 'promised-a-voucher-secretly';

interface Ctx {
  store: E2eStore;
  stack: Stack;
  adminPort: number;
  visitor: TestClient;
  agent: TestClient;
}

const bodyOf = (el: Element) => el.getChildText('body') ?? '';
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const chat = (id: string, text: string) =>
  `<message type='chat' to='${SHOP}' realto='${VISITOR}'><body id='${id}' maType='6'>${text}</body></message>`;

/** consultctl against the sidecar's admin API. */
const ctl = (ctx: Ctx, args: string[]) => runConsultctl(`http://127.0.0.1:${ctx.adminPort}`, TOKEN, args);
const ctlJson = async (ctx: Ctx, args: string[]) => {
  const r = await ctl(ctx, args);
  assert.is(r.code, 0, `consultctl ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

for (const kind of DURABLE_STORES) {
  const e2e = suite<Ctx>(`canned replies, tags and notes through ejabberd [${kind}]`);

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
            name: 'Canned shop',
            language: 'en',
            canned: { hours: 'We answer from 9 to 5.' },
            agents: [{ jid: `test01@${D}`, maxSessions: 5 }],
          },
        ],
      },
      users: ['visitor1', 'test01'],
    });
    ctx.agent = await ctx.stack.connect('test01', 'desk');
    ctx.visitor = await ctx.stack.connect('visitor1', 'web');
    await ctx.visitor.send(consult('v1', 'where is my money?'));
    await ctx.visitor.waitFor(isAck('v1'));
    await ctx.agent.waitFor((el) => bodyOf(el) === 'where is my money?');
  });

  e2e.after(async (ctx) => {
    try {
      await ctx.stack?.stop();
    } finally {
      await ctx.store?.stop();
    }
  });

  e2e('consultctl adds a reply; #refund reaches the visitor as the shop’s text; an unknown name bounces', async (ctx) => {
    const set = await ctlJson(ctx, ['canned', 'set', SHOP, 'refund', 'Dear {visitor}, {agent} of {shop} sent your refund.']);
    assert.equal(
      set.replies.map((r: { name: string }) => r.name),
      ['hours', 'refund'],
    );
    assert.equal((await ctlJson(ctx, ['canned', SHOP])).replies, set.replies);

    await ctx.agent.send(chat('a1', '#refund'));
    const got = await ctx.visitor.waitFor((el) => el.getChild('body')?.attrs.id === 'a1');
    assert.is(bodyOf(got), 'Dear visitor1, test01 of Canned shop sent your refund.');
    assert.equal(
      [got.attrs.from, got.attrs.realfrom, got.attrs.type, got.getChild('body')?.attrs.msgType],
      [SHOP, `test01@${D}`, 'consult', '1'],
    );
    await ctx.agent.waitFor(isAck('a1'));

    await ctx.agent.send(chat('a2', '#refnd'));
    const bounced = await ctx.agent.waitFor(isBounce('a2'));
    assert.match(bounced.getChild('error')?.getChildText('text') ?? '', 'did you mean #refund?');
    await ctx.agent.send(chat('a3', '#1 question: did it arrive?'));
    await ctx.visitor.waitFor((el) => bodyOf(el) === '#1 question: did it arrive?');
    await ctx.visitor.settle();
    assert.not.ok(
      ctx.visitor.received.some((el) => bodyOf(el).includes('refnd')),
      'the unknown name reached nobody',
    );
    const removed = await ctl(ctx, ['canned', 'rm', SHOP, 'nope']);
    assert.is(removed.code, 1);
    assert.match(removed.stderr, `404 ${SHOP} has no canned reply nope`);
  });

  e2e('/tag and /note reach only the agent, survive a SIGKILL, are archived and filtered by tag', async (ctx) => {
    await ctx.agent.send(chat('t1', '/tag VIP refund'));
    const tagged = await ctx.agent.waitFor((el) => isNotice(el) && bodyOf(el).startsWith('Tags of the conversation'));
    assert.is(bodyOf(tagged), `Tags of the conversation with ${VISITOR}: vip, refund`);
    await ctx.agent.send(chat('n1', `/note ${NOTE}`));
    await ctx.agent.waitFor((el) => isNotice(el) && bodyOf(el) === `Note kept (${VISITOR} does not see it).`);

    await ctx.stack.sidecar.kill('SIGKILL');
    await ctx.stack.startSidecarAgain();
    await decidesShops(ctx.stack.sidecar, [SHOP]);
    await shimRoutes(ctx.stack.ejabberd, [SHOP]);
    await ctx.agent.send(chat('u1', '/untag refund'));
    const after = await ctx.agent.waitFor((el) => isNotice(el) && bodyOf(el).endsWith(': vip'));
    assert.is(bodyOf(after), `Tags of the conversation with ${VISITOR}: vip`, 'the tags came back from the journal');
    await ctx.agent.send(chat('c1', '/close'));
    await ctx.visitor.waitFor((el) => bodyOf(el).includes('This conversation has ended'));

    await waitUntil('the session archived', async () => {
      const res = await fetch(`http://127.0.0.1:${ctx.adminPort}/archive?shop=${SHOP}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return res.ok && ((await res.json()) as { items: unknown[] }).items.length === 1;
    });
    const found: { tags: string[]; lines: { role: string; text: string }[] }[] = await ctlJson(ctx, [
      'archive',
      '--shop',
      SHOP,
      '--tag',
      'vip',
    ]);
    assert.is(found.length, 1);
    const [record] = found;
    assert.equal(record.tags, ['vip']);
    assert.equal(
      record.lines.filter((l) => l.role === 'note').map((l) => l.text),
      [NOTE],
    );
    assert.ok(record.lines.some((l) => l.role === 'agent' && l.text === 'Dear visitor1, test01 of Canned shop sent your refund.'));
    assert.equal(await ctlJson(ctx, ['archive', '--shop', SHOP, '--tag', 'refund']), [], 'untagged before the close');
    const stats = await ctlJson(ctx, ['stats', '--shop', SHOP, '--tag', 'vip']);
    assert.is(stats.find((s: { agent: string | null }) => s.agent === null)?.sessions, 1);

    await ctx.visitor.settle();
    assert.not.ok(
      ctx.visitor.received.some((el) => el.toString().includes(NOTE) || bodyOf(el).startsWith('/')),
      'the visitor never saw the note or a command',
    );
  });

  e2e.run();
}
