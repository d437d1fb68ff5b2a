// Bot first, human on request: the bot is a real HTTP server in this test. The desk asks it after
// the decision is durable and feeds its answer back as a decision (msgType 47 to the visitor); the
// visitor asks for a human (a word or msgType 65537) and the human gets the bot conversation; a
// dead, failing or slow bot hands the visitor to a human with a notice. On memory, PGlite and PostgreSQL.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import type { BotRequest } from '../../../src/desk/ports.js';
import type { BotMode } from '../../../src/domain/shop.js';
import type { JournalStore } from '../../../src/desk/journal.js';
import { findChild, parseElement, serialize, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

type Reply = (req: BotRequest, res: ServerResponse) => void;
interface Bot {
  url: string;
  asked: BotRequest[];
  reply: Reply;
  server: Server;
}

async function startBot(): Promise<Bot> {
  const bot = { asked: [] as BotRequest[], reply: ((_r, res) => res.end('{}')) as Reply } as Bot;
  bot.server = createServer(async (req: IncomingMessage, res) => {
    let body = '';
    for await (const c of req) body += c;
    const parsed = JSON.parse(body) as BotRequest;
    bot.asked.push(parsed);
    res.setHeader('content-type', 'application/json');
    bot.reply(parsed, res);
  });
  await new Promise<void>((r) => bot.server.listen(0, '127.0.0.1', r));
  bot.url = `http://127.0.0.1:${(bot.server.address() as AddressInfo).port}/bot`;
  return bot;
}

/** The size of the largest change and snapshot part the desk wrote to its journal. */
interface Journaled {
  largest: number;
}

async function world(
  backend: Backend,
  bot: Bot,
  mode: BotMode,
  url = bot.url,
  o: { timeoutMs?: number; maxStanzaBytes?: number; journaled?: Journaled } = {},
) {
  const config = parseConfig({
    systemJid: a('admin'),
    ...(o.maxStanzaBytes ? { maxStanzaBytes: o.maxStanzaBytes } : {}),
    shops: [
      {
        jid: SHOP,
        name: 'Shop One',
        language: 'en',
        bot: { mode, url, timeoutMs: o.timeoutMs ?? 300, retries: 1 },
        agents: [{ jid: a('ann'), maxSessions: 3 }],
      },
    ],
  });
  const journaled = o.journaled;
  const w = await deskWorld({
    backend,
    backends,
    config,
    journal: journaled
      ? (store: JournalStore): JournalStore => ({
          append: (records, snapshots) => {
            for (const r of records) for (const c of r.changes) journaled.largest = Math.max(journaled.largest, JSON.stringify(c).length);
            for (const sn of snapshots) for (const p of sn.parts) journaled.largest = Math.max(journaled.largest, p.length);
            return store.append(records, snapshots);
          },
          load: (shop) => store.load(shop),
          forget: (shop) => store.forget(shop),
        })
      : undefined,
  });
  return Object.assign(w, {
    says: async (id: string, text: string, msgType = '1') => {
      const v = await w.filter(
        `<message type='consult' from='${a('v1')}/web' to='${SHOP}'><body id='${id}' msgType='${msgType}'>${text}</body></message>`,
      );
      await w.desk.settled(); // the bot's answer (or the fallback) is in
      return v;
    },
  });
}

const body = (m: XmlElement) => findChild(m, 'body')!;
const isBotAnswer = (m: XmlElement) => body(m)?.attrs.msgType === '47';

for (const backend of BACKENDS) {
  const bot = suite<{ bot: Bot }>(`bot first, human on request [${backend}]`);
  bot.before(async (ctx) => {
    ctx.bot = await startBot();
  });
  bot.after(async (ctx) => {
    ctx.bot.server.closeAllConnections();
    await new Promise((r) => ctx.bot.server.close(r));
  });
  bot.before.each((ctx) => {
    ctx.bot.asked.length = 0;
    ctx.bot.reply = (req, res) => res.end(JSON.stringify({ text: `echo: ${req.text}` }));
  });

  bot('bot first: the bot answers as msgType 47 while the agent is online; the contract carries the conversation', async ({ bot }) => {
    const w = await world(backend, bot, 'bot-first');
    await w.online(a('ann'));
    const first = await w.says('m1', 'where is my order?');
    assert.is(first.action, Action.ACTION_DROP, 'not relayed to the agent');
    assert.is(w.desk.view.sessions(SHOP)[0].agent, 'robot');
    assert.equal(
      bot.asked.map((r) => [r.shop, r.visitor, r.id, r.text, r.msgType]),
      [[SHOP, a('v1'), 'm1', 'where is my order?', '1']],
    );
    assert.equal(
      bot.asked[0].history.map((l) => [l.role, l.text]),
      [['visitor', 'where is my order?']],
    );
    const answer = w.takeSent().find(isBotAnswer)!;
    assert.ok(answer, 'the answer went out');
    assert.equal(
      [answer.attrs.from, answer.attrs.to, answer.attrs.type, answer.attrs.qchatid, answer.attrs.channelid],
      [SHOP, a('v1'), 'consult', '5', '{"d":"recv","usrType":"usr","cn":"consult"}'],
    );
    assert.equal([body(answer).attrs.maType, textOf(body(answer))], ['3', 'echo: where is my order?']);
    await w.says('m2', 'and the invoice?');
    assert.equal(
      bot.asked[1].history.map((l) => l.text),
      ['where is my order?', 'echo: where is my order?', 'and the invoice?'],
    );
  });

  for (const [how, text, msgType] of [
    ['a command word', '人工', '1'],
    ['msgType 65537', 'turn to human', '65537'],
  ] as const) {
    bot(`asking for a human (${how}) hands over with the bot conversation as history`, async ({ bot }) => {
      const w = await world(backend, bot, 'bot-first');
      await w.online(a('ann'));
      await w.says('m1', 'hello bot');
      w.takeSent();
      const v = await w.says('m2', text, msgType);
      assert.is(bot.asked.length, 1, 'the request is not asked of the bot');
      const sent = v.extra.map((x) => parseElement(Buffer.from(x).toString())); // handed over within the verdict
      const toVisitor = sent.filter((m) => m.attrs.to === a('v1')).map((m) => textOf(body(m)));
      assert.ok(
        toVisitor.some((t) => t.includes('human agent')),
        toVisitor.join(' | '),
      );
      assert.not.ok(
        sent.some((m) => m.attrs.to === a('v1') && m.attrs.realfrom === a('admin')),
        'no second welcome: the conversation began with one',
      );
      const toAnn = sent.filter((m) => m.attrs.to === a('ann'));
      assert.match(textOf(body(toAnn[0])), 'conversation of v1@cs.test with the assistant');
      assert.equal(
        toAnn.slice(1).map((m) => textOf(body(m))),
        ['hello bot', 'echo: hello bot', text],
        'the bot conversation, in order',
      );
      assert.ok(
        toAnn.slice(1).every((m) => findChild(m, 'delay')),
        'marked as history',
      );
      assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'));
      assert.is((await w.says('m3', 'thanks')).action, Action.ACTION_REWRITE, 'now relayed to ann');
    });
  }

  bot('the bot may hand over itself ({"handover": true})', async ({ bot }) => {
    bot.reply = (_r, res) => res.end('{"handover":true}');
    const w = await world(backend, bot, 'bot-first');
    await w.online(a('ann'));
    await w.says('m1', 'complicated');
    assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'));
  });

  for (const [how, reply] of [
    ['answers 500', (_r: BotRequest, res: ServerResponse) => res.writeHead(500).end('boom')],
    ['answers garbage', (_r: BotRequest, res: ServerResponse) => res.end('<html>')],
    ['never answers (timeout)', () => undefined],
  ] as [string, Reply][]) {
    bot(`a bot that ${how} is retried, then the visitor goes to a human with a notice`, async ({ bot }) => {
      bot.reply = reply;
      const w = await world(backend, bot, 'bot-first');
      await w.online(a('ann'));
      await w.says('m1', 'hello?');
      assert.is(bot.asked.length, 2, 'one retry');
      const sent = w.takeSent();
      assert.ok(
        sent.some((m) => m.attrs.to === a('v1') && textOf(body(m)).includes('cannot answer')),
        'the visitor is told',
      );
      assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'));
      assert.ok(
        sent.some((m) => m.attrs.to === a('ann') && textOf(body(m)) === 'hello?'),
        'ann gets the question',
      );
    });
  }

  bot(
    'a 40 MB answer: read no further than maxBotAnswerBytes, the visitor goes to a human, nothing large journaled or sent',
    async ({ bot }) => {
      const SIZE = 40 * 1024 * 1024;
      let written = 0;
      bot.reply = (_r, res) => {
        // A real 40 MB body, written as fast as the sidecar reads it (until it stops reading).
        const chunk = Buffer.alloc(1024 * 1024, 'a');
        res.on('error', () => undefined);
        res.write('{"text":"');
        const more = () => {
          while (written < SIZE && !res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          if (!res.destroyed) res.end('"}');
        };
        more();
      };
      const journaled = { largest: 0 };
      const w = await world(backend, bot, 'bot-first', bot.url, { timeoutMs: 20_000, journaled });
      await w.online(a('ann'));
      await w.says('m1', 'tell me everything');
      const sent = w.takeSent();
      assert.ok(
        sent.some((m) => m.attrs.to === a('v1') && textOf(body(m)).includes('cannot answer')),
        'the visitor is told, as for any bad answer',
      );
      assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'), 'a human took over');
      const largestSent = Math.max(...sent.map((m) => Buffer.byteLength(serialize(m))));
      assert.ok(largestSent < 64 * 1024, `largest stanza sent: ${largestSent} bytes`);
      assert.ok(journaled.largest < 64 * 1024, `largest change journaled: ${journaled.largest} bytes`);
      assert.is(bot.asked.length, 1, 'not asked again');
      assert.ok(written < SIZE, `the sidecar stopped reading (the bot wrote ${written} of ${SIZE} bytes)`);
    },
  );

  bot('an answer that fits maxBotAnswerBytes but makes a stanza over maxStanzaBytes is not sent: to a human', async ({ bot }) => {
    bot.reply = (_r, res) => res.end(JSON.stringify({ text: `${'<&>'.repeat(700)}` })); // 2,100 characters, 9,800 bytes escaped
    const journaled = { largest: 0 };
    const w = await world(backend, bot, 'bot-first', bot.url, { maxStanzaBytes: 4096, journaled });
    await w.online(a('ann'));
    await w.says('m1', 'hello?');
    const sent = w.takeSent();
    assert.ok(
      sent.some((m) => m.attrs.to === a('v1') && textOf(body(m)).includes('cannot answer')),
      'the visitor is told',
    );
    assert.not.ok(
      sent.some((m) => textOf(body(m)).includes('<&>')),
      'the answer went nowhere',
    );
    assert.ok(journaled.largest < 4096, `largest change journaled: ${journaled.largest} bytes`);
    assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'));
  });

  bot('a dead bot (nothing listening) falls back to the queue when no agent is there, with the no-agent text', async ({ bot }) => {
    const w = await world(backend, bot, 'bot-first', 'http://127.0.0.1:1/bot');
    await w.says('m1', 'anyone?');
    assert.is(w.desk.view.queue(SHOP).length, 1);
    const texts = w.takeSent().map((m) => textOf(body(m)));
    assert.ok(texts.some((t) => t.includes('cannot answer')));
    await w.online(a('ann'));
    assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'), 'served once ann comes');
  });

  bot('human first: a human when one can take it, the bot while none can', async ({ bot }) => {
    const w = await world(backend, bot, 'human-first');
    await w.says('m1', 'nobody here?');
    assert.is(w.desk.view.sessions(SHOP)[0].agent, 'robot');
    assert.ok(w.takeSent().some(isBotAnswer));
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    await w.online(a('ann'));
    assert.is((await w.says('m2', 'now?')).action, Action.ACTION_REWRITE);
    assert.is(w.desk.view.sessions(SHOP)[0].agent, a('ann'));
  });

  bot('a bot session is archived with the bot lines', async ({ bot }) => {
    const w = await world(backend, bot, 'bot-first');
    await w.says('m1', 'q');
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    await w.desk.settled();
    const [r] = await w.archive.search({ shop: SHOP });
    assert.equal(
      r.lines.map((l) => [l.role, l.text]),
      [
        ['visitor', 'q'],
        ['bot', 'echo: q'],
      ],
    );
    assert.is(r.agent, 'robot');
  });

  bot.run();
}

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
