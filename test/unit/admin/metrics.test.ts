// /metrics in Prometheus' terms: a closed session's first response, handle time and queue wait in histograms and
// its close and rating in counters, recorded once when the close is durable (not again when a restart replays the
// journal, not for a close taken back); consult_build_info; the metrics listener without a token; the bot webhook's
// requests counted by outcome against a real HTTP server in the test.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { suite, test } from 'uvu';
import * as assert from 'uvu/assert';
import { Metrics } from '../../../src/admin/metrics.js';
import { startMetricsServer } from '../../../src/admin/metrics-server.js';
import { MAX_GROUP_LABELS, OTHER_GROUP } from '../../../src/admin/outcome-metrics.js';
import { askBot } from '../../../src/bot/webhook.js';
import { parseConfig } from '../../../src/domain/config.js';
import type { BotConfig } from '../../../src/domain/shop.js';
import type { JournalStore } from '../../../src/desk/journal.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { silent } from '../../../src/domain/log.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';
import { closedSession } from '../../support/archive.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();
const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The exposition text as `name{label="v",…}` (labels sorted) → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/i.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/gi)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(labels.length ? `${m[1]}{${labels.join(',')}}` : m[1], Number(m[3]));
  }
  return out;
}
const key = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')}}`;

/** A journal store whose appends fail while `failing` is set. */
function failable(store: JournalStore) {
  const ctl = { failing: false };
  const wrapped: JournalStore = {
    append: (records, snapshots) => (ctl.failing ? Promise.reject(new Error('disk gone')) : store.append(records, snapshots)),
    load: (shop) => store.load(shop),
    forget: (shop) => store.forget(shop),
  };
  return { ctl, wrapped };
}

async function world(backend: Backend) {
  const config = parseConfig({
    systemJid: a('admin'),
    archive: { ratingWindowSec: 600 },
    shops: [{ jid: SHOP, name: 'Shop One', agents: [{ jid: a('ann'), maxSessions: 5 }] }],
  });
  const metrics = new Metrics();
  let journal: ReturnType<typeof failable> | undefined;
  const w = await deskWorld({
    backend,
    backends,
    config,
    metrics: metrics.sessions,
    journal: (store) => (journal = failable(store)).wrapped,
  });
  metrics.watch({ desk: w.desk, directory: w.directory, link: new ShimLink(silent) });
  return Object.assign(w, {
    metrics,
    journalFails: (on: boolean) => {
      journal!.ctl.failing = on;
    },
    scrape: async () => samples(await metrics.registry.metrics()),
    visitorSays: (visitor: string, id: string, text: string) =>
      w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}' msgType='1'>${text}</body></message>`),
    agentSays: (id: string, text: string, visitor: string) =>
      w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}' realto='${a(visitor)}'><body id='${id}'>${text}</body></message>`),
  });
}
type MetricsWorld = Awaited<ReturnType<typeof world>>;

const L = { shop: SHOP, group: '' };
const bucket = (name: string, le: string) => key(`${name}_bucket`, { ...L, le });

/**
 * v1 writes with nobody online and waits 30 s in the queue; ann comes and takes it; she answers 45 s after the first
 * message; the session is closed by her 200 s after it; v1 rates it 4.
 */
async function servedAndClosed(w: MetricsWorld): Promise<void> {
  await w.visitorSays('v1', 'm1', 'hello?');
  w.advance(30_000);
  await w.online(a('ann'));
  w.advance(15_000);
  await w.agentSays('r1', 'hi, how can I help?', 'v1');
  w.advance(155_000);
  await w.agentSays('c1', '/close', 'v1');
  await w.visitorSays('v1', 'rate', '4');
  await w.desk.settled();
}

function assertCountedOnce(m: Map<string, number>): void {
  // First response 45 s: above the 30 s bucket, within 60 s.
  assert.is(m.get(bucket('consult_first_response_seconds', '30')), 0);
  assert.is(m.get(bucket('consult_first_response_seconds', '60')), 1);
  assert.is(m.get(bucket('consult_first_response_seconds', '+Inf')), 1);
  assert.is(m.get(key('consult_first_response_seconds_sum', L)), 45);
  assert.is(m.get(key('consult_first_response_seconds_count', L)), 1);
  // Handle time 200 s: above 120 s, within 300 s.
  assert.is(m.get(bucket('consult_handle_seconds', '120')), 0);
  assert.is(m.get(bucket('consult_handle_seconds', '300')), 1);
  assert.is(m.get(key('consult_handle_seconds_sum', L)), 200);
  assert.is(m.get(key('consult_handle_seconds_count', L)), 1);
  // Queue wait 30 s: within the 30 s bucket (le is inclusive), above 10 s.
  assert.is(m.get(bucket('consult_queue_wait_seconds', '10')), 0);
  assert.is(m.get(bucket('consult_queue_wait_seconds', '30')), 1);
  assert.is(m.get(key('consult_queue_wait_seconds_sum', L)), 30);
  assert.is(m.get(key('consult_sessions_closed_total', { shop: SHOP, reason: 'agent' })), 1);
  assert.is(m.get(key('consult_sessions_closed_total', { shop: SHOP, reason: 'idle' })), 0, 'every reason shown, at zero');
  assert.is(m.get(key('consult_ratings_total', { shop: SHOP, score: '4' })), 1);
  assert.is(m.get(key('consult_ratings_total', { shop: SHOP, score: '5' })), 0);
}

for (const backend of BACKENDS) {
  const closes = suite(`session metrics on the desk [${backend}]`);

  closes('a closed session: first response, handle time and queue wait in their buckets; its close and rating counted', async () => {
    const w = await world(backend);
    const before = await w.scrape();
    assert.is(before.get(key('consult_sessions_closed_total', { shop: SHOP, reason: 'agent' })), 0, 'a shop decided here starts at 0');
    assert.is(before.get(key('consult_first_response_seconds_count', L)), undefined, 'nothing observed yet');
    await servedAndClosed(w);
    assertCountedOnce(await w.scrape());
  });

  closes('a restart replays the journal without counting the close or the rating again', async () => {
    const w = await world(backend);
    await servedAndClosed(w);
    await w.restart();
    await w.tick();
    assertCountedOnce(await w.scrape());
  });

  closes('a close the archive could not take: written after a restart, still counted once', async () => {
    const w = await world(backend);
    const put = w.archive.put;
    w.archive.put = () => Promise.reject(new Error('archive table away'));
    try {
      await servedAndClosed(w);
    } finally {
      w.archive.put = put;
    }
    assert.is((await w.archive.search({ shop: SHOP })).length, 0, 'not archived before the restart');
    await w.restart();
    await w.tick();
    assert.is((await w.archive.search({ shop: SHOP })).length, 1, 'archived from the replayed journal');
    assertCountedOnce(await w.scrape());
  });

  closes('a close whose journal write fails is taken back and not counted', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello');
    w.journalFails(true);
    const closed = await w.desk.closeSession(SHOP, a('v1'), 'admin').then(
      () => 'closed',
      () => 'refused',
    );
    w.journalFails(false);
    assert.is(closed, 'refused');
    assert.is(w.desk.view.sessions(SHOP).length, 1, 'the session is open again');
    const m = await w.scrape();
    assert.is(m.get(key('consult_sessions_closed_total', { shop: SHOP, reason: 'admin' })), 0);
    assert.is(m.get(key('consult_handle_seconds_count', L)), undefined);
  });

  closes.run();
}

test('group labels are bounded per shop: past the cap, groups share one label', async () => {
  const metrics = new Metrics();
  const record = (group: string) => closedSession({ id: group, shop: SHOP, visitor: a('v'), agent: a('ann'), group });
  for (let i = 0; i < MAX_GROUP_LABELS + 5; i++) metrics.sessions.sessionClosed(record(`g${i}`));
  metrics.sessions.sessionClosed(record('g0'));
  const m = samples(await metrics.registry.metrics());
  const groups = new Set(
    [...m.keys()].filter((k) => k.startsWith('consult_handle_seconds_count')).map((k) => /group="([^"]*)"/.exec(k)![1]),
  );
  assert.is(groups.size, MAX_GROUP_LABELS + 1);
  assert.ok(groups.has(OTHER_GROUP));
  assert.is(m.get(key('consult_handle_seconds_count', { shop: SHOP, group: OTHER_GROUP })), 5);
  assert.is(m.get(key('consult_handle_seconds_count', { shop: SHOP, group: 'g0' })), 2);
  assert.is(m.get(key('consult_first_response_seconds_count', { shop: SHOP, group: 'g0' })), undefined, 'never answered: not observed');
});

test('consult_build_info is 1 with the version from package.json and the Node.js version', async () => {
  const m = samples(await new Metrics().registry.metrics());
  assert.is(m.get(key('consult_build_info', { version: VERSION, node_version: process.version })), 1);
});

test('averages over the archive and the archived-sessions gauge are gone', async () => {
  const text = await new Metrics().registry.metrics();
  for (const gone of ['_avg', 'consult_archived_sessions']) assert.not.ok(text.includes(gone), gone);
});

test('the metrics listener: loopback port 8089 by default; GET /metrics without a token; nothing else', async () => {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'Shop One', agents: [] }] });
  assert.equal(config.metrics, { host: '127.0.0.1', port: 8089 });
  assert.equal(parseConfig({ metrics: { port: 9100 }, shops: [] }).metrics, { host: '127.0.0.1', port: 9100 });
  assert.throws(() => parseConfig({ metrics: { port: 70000 }, shops: [] }), /metrics\.port/);
  assert.throws(() => parseConfig({ metrics: { path: '/m' }, shops: [] }), /metrics/);

  const metrics = new Metrics();
  const server = await startMetricsServer(metrics.registry, '127.0.0.1', 0);
  try {
    const url = `http://127.0.0.1:${server.port}`;
    const res = await fetch(`${url}/metrics`);
    assert.is(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', 'text/plain');
    assert.match(await res.text(), /^consult_build_info\{.*\} 1$/m);
    assert.is((await fetch(`${url}/shops`)).status, 404, 'not the admin API');
    assert.is((await fetch(`${url}/metrics`, { method: 'POST' })).status, 405);
  } finally {
    await server.close();
  }
});

// ---- the bot webhook ----------------------------------------------------------------------------

type Reply = (res: ServerResponse) => void;
async function startBot(): Promise<{ server: Server; url: string; reply: Reply; requests: number }> {
  const bot = { reply: ((res) => res.end('{}')) as Reply, requests: 0 } as { server: Server; url: string; reply: Reply; requests: number };
  bot.server = createServer(async (req, res) => {
    for await (const _ of req);
    bot.requests++;
    bot.reply(res);
  });
  await new Promise<void>((r) => bot.server.listen(0, '127.0.0.1', r));
  bot.url = `http://127.0.0.1:${(bot.server.address() as AddressInfo).port}/bot`;
  return bot;
}

const botSuite = suite<{ bot: Awaited<ReturnType<typeof startBot>> }>('bot webhook metrics');
botSuite.before(async (ctx) => {
  ctx.bot = await startBot();
});
botSuite.after(async (ctx) => {
  ctx.bot.server.closeAllConnections();
  await new Promise((r) => ctx.bot.server.close(r));
});

const question = { shop: SHOP, visitor: a('v1'), id: 'm1', text: 'hi', msgType: '1', history: [] };
const botOf = (url: string, retries = 0, timeoutMs = 2000): BotConfig => ({ mode: 'bot-first', url, timeoutMs, retries });

botSuite('every request to the bot is counted by outcome and timed; a retry is a request of its own', async ({ bot }) => {
  const metrics = new Metrics();
  const ask = (b: BotConfig) => askBot(b, question, undefined, (r) => metrics.bot.request(r)).catch(() => undefined);
  bot.reply = (res) => res.end(JSON.stringify({ text: 'hello' }));
  await ask(botOf(bot.url));
  bot.reply = (res) => res.end(JSON.stringify({ handover: true }));
  await ask(botOf(bot.url));
  bot.reply = (res) => res.end('');
  await ask(botOf(bot.url));
  bot.reply = (res) => res.writeHead(500).end();
  await ask(botOf(bot.url, 1)); // two requests
  bot.reply = (res) => res.end('not json');
  await ask(botOf(bot.url));
  bot.reply = () => {}; // never answers
  await ask(botOf(bot.url, 0, 200));
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/bot`;
  await new Promise((r) => closed.close(r));
  await ask(botOf(deadUrl));

  const m = samples(await metrics.registry.metrics());
  const count = (outcome: string) => m.get(key('consult_bot_requests_total', { shop: SHOP, outcome }));
  assert.equal(['answered', 'handover', 'empty', 'http_error', 'bad_answer', 'timeout', 'unreachable'].map(count), [1, 1, 1, 2, 1, 1, 1]);
  assert.is(bot.requests, 7, 'the server saw every request but the unreachable one');
  assert.is(m.get(key('consult_bot_request_seconds_count', { shop: SHOP })), 8);
  assert.ok(m.get(key('consult_bot_request_seconds_sum', { shop: SHOP }))! >= 0.19, 'the timed-out request is timed up to its timeout');
});

botSuite.run();

test.run();
