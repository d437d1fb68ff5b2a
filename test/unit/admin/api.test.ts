// Admin HTTP API, /metrics and consultctl against a real admin server on loopback,
// backed by a Desk on the memory store (presence reported through desk.handleEvent).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startAdminServer } from '../../../src/admin/http.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { WatchList } from '../../../src/cluster/watch-list.js';
import { Metrics } from '../../../src/admin/metrics.js';
import { Backends, deskWorld } from '../../support/desk.js';
import { closedSession } from '../../support/archive.js';
import { oneShopConfig } from '../../support/one-shop.js';
import { writeConfig } from '../../support/sidecar.js';
import { silent } from '../../../src/domain/log.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const TOKEN = 'test-admin-token';

async function world() {
  const config = oneShopConfig(D, { agents: { ann: 1, bob: 1 } });
  const metrics = new Metrics();
  const w = await deskWorld({
    backend: 'memory',
    backends: new Backends(),
    config,
    clock: Date.now(),
    hooks: { observe: (act, s) => metrics.observe(act, s) },
    onBatch: (b) => metrics.batch(b),
    metrics: metrics.sessions,
  });
  const { store, directory, desk, presence, sent, filter } = w;
  const link = new ShimLink(silent);
  const pushed: { shops: string[]; agents: string[]; owned: string[] }[] = [];
  link.pushWatchList = (watch) => {
    pushed.push(watch);
  }; // spy: what the shims would be told
  metrics.watch({ desk, directory, link });
  const admin = await startAdminServer(
    {
      store,
      directory,
      desk,
      presence,
      watch: new WatchList({ directory, shops: desk.shops, sidecar: '', push: (watch) => link.pushWatchList(watch) }),
      ownership: w.ownership,
      metrics,
      token: TOKEN,
      log: silent,
      defaultLimits: config.limits,
    },
    '127.0.0.1',
    0,
  );
  const url = `http://127.0.0.1:${admin.port}`;
  const api = async (method: string, p: string, body?: unknown, token: string | null = TOKEN) => {
    const res = await fetch(url + p, {
      method,
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return {
      status: res.status,
      text,
      json: (() => {
        try {
          return JSON.parse(text);
        } catch {
          return undefined;
        }
      })(),
    };
  };
  return {
    store,
    archive: w.archive,
    desk,
    directory,
    sent,
    pushed,
    admin,
    url,
    api,
    filter,
    metrics,
    online: (name: string, show = '') => w.online(a(name), 'pc', show),
    visitorSays: (v: string, id: string) =>
      filter(`<message type='consult' from='${a(v)}/web' to='${SHOP}'><body id='${id}'>hi</body></message>`),
  };
}
type World = Awaited<ReturnType<typeof world>>;

const cli = (w: World, args: string[], env: Record<string, string> = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), ...args],
      {
        cwd: repoRoot,
        env: { ...process.env, CONSULT_ADMIN_URL: w.url, CONSULT_ADMIN_TOKEN: TOKEN, ...env },
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

const withWorld = (name: string, fn: (w: World) => Promise<void>) =>
  test(name, async () => {
    const w = await world();
    try {
      await fn(w);
    } finally {
      await w.admin.close();
    }
  });

withWorld('every API route needs the bearer token; /metrics does not', async (w) => {
  for (const token of [null, 'wrong', '']) {
    const r = await w.api('GET', '/shops', undefined, token);
    assert.is(r.status, 401, `token ${token}`);
    assert.match(r.json.detail, /bearer token/);
  }
  assert.is((await w.api('POST', '/sessions/close', { shop: SHOP, visitor: a('v') }, null)).status, 401);
  assert.is((await w.api('GET', '/metrics', undefined, null)).status, 200);
  assert.is((await w.api('GET', '/nowhere')).status, 404);
});

withWorld('validation errors are 400 and name the field', async (w) => {
  const cases: [string, string, unknown, RegExp][] = [
    ['PUT', '/shops/not-a-jid', { name: 'x' }, /^shop /],
    ['PUT', `/shops/${a('new')}`, {}, /^name /],
    ['PATCH', `/shops/${SHOP}`, { strategy: 'fastest' }, /^strategy must be one of sticky, least-busy, round-robin, random/],
    ['PATCH', `/shops/${SHOP}`, { queueEnabled: 'yes' }, /^queueEnabled /],
    ['PATCH', `/shops/${SHOP}`, { welcome: 42 }, /^welcome /],
    ['PUT', `/shops/nul%00@${D}`, { name: 'x' }, /^shop must be a bare JID/],
    ['PUT', `/shops/${'x'.repeat(3000)}@${D}`, { name: 'x' }, /^shop must be a bare JID/],
    ['PUT', `/shops/${SHOP}/agents/a%20b@${D}`, {}, /^agent must be a bare JID/],
    ['PATCH', `/shops/${SHOP}`, { language: 'fr' }, /^language must be one of zh, en/],
    ['PATCH', `/shops/${SHOP}`, { texts: { greeting: 'hi' } }, /^texts\.greeting is not a text/],
    [
      'PATCH',
      `/shops/${SHOP}`,
      { texts: { queuePosition: 'You are {rank}' } },
      /^texts\.queuePosition uses \{rank\}; it may use \{position\}/,
    ],
    ['PATCH', `/shops/${SHOP}`, { limits: { queueMax: 0 } }, /^limits\.queueMax must be an integer in 1\.\.1000000/],
    ['PATCH', `/shops/${SHOP}`, '{not json', /JSON/],
    ['PUT', `/shops/${SHOP}/agents/${a('cat')}`, { maxSessions: 0 }, /^maxSessions must be an integer in 1\.\.1000/],
    ['PUT', `/agents/${a('ann')}/status`, { status: 'busy' }, /^status must be one of standard, dnd, always-on/],
    ['POST', '/sessions/close', { shop: SHOP }, /^visitor /],
    ['POST', '/sessions/transfer', { shop: SHOP, visitor: a('v1') }, /^to /],
    ['GET', '/queue', undefined, /^shop /],
  ];
  for (const [method, p, body, re] of cases) {
    const r = await w.api(method, p, body);
    assert.is(r.status, 400, `${method} ${p}: ${r.text}`);
    assert.match(r.json.detail, re, `${method} ${p}`);
  }
  assert.is(w.pushed.length, 0, 'nothing changed, nothing pushed');
});

withWorld('texts per shop: an English set, one text overridden, both used in what visitors read', async (w) => {
  const r = await w.api('PATCH', `/shops/${SHOP}`, { language: 'en', texts: { queuePosition: 'Please hold: you are #{position}.' } });
  assert.is(r.status, 200, r.text);
  assert.equal([r.json.language, r.json.texts], ['en', { queuePosition: 'Please hold: you are #{position}.' }]);
  await w.online('ann');
  await w.visitorSays('v1', 'x1'); // ann is full (maxSessions 1)
  const queued = await w.visitorSays('v2', 'x2');
  const told = queued.extra.map((x) => Buffer.from(x).toString()).find((x) => x.includes("auto_reply='true'"))!;
  assert.match(told, 'Please hold: you are #1.');
  await w.desk.closeSession(SHOP, `v1@${D}`, 'admin');
  assert.ok(
    w.sent.some((m) => m.attrs.to === `v1@${D}` && JSON.stringify(m).includes('This conversation has ended')),
    'English default',
  );
  const back = await w.api('PATCH', `/shops/${SHOP}`, { language: 'zh', texts: { queuePosition: null } });
  assert.equal([back.json.language, back.json.texts], ['zh', {}], 'null removes an override');
});

withWorld('shops: create, read, partial update, delete; each change reloads and pushes the watch list', async (w) => {
  const list = await w.api('GET', '/shops');
  assert.equal(
    list.json.map((s: { jid: string }) => s.jid),
    [SHOP],
  );
  assert.equal(list.json[0].agents, [
    { jid: a('ann'), maxSessions: 1 },
    { jid: a('bob'), maxSessions: 1 },
  ]);

  const SHOP2 = a('shop_2');
  const created = await w.api('PUT', `/shops/${SHOP2}`, { name: 'Two', strategy: 'round-robin', queueEnabled: false });
  assert.is(created.status, 200, created.text);
  assert.equal(created.json, {
    jid: SHOP2,
    name: 'Two',
    welcome: 'Two',
    noAgentText: '当前没有客服在线，请稍后再试。',
    strategy: 'round-robin',
    queueEnabled: false,
    agents: [],
    limits: {
      queueMax: 1000,
      keptPerVisitor: 100,
      keptBytesPerVisitor: 1048576,
      historyPerSession: 20,
      stickyMax: 100000,
      transcriptPerSession: 1000,
      outboxMax: 10_000,
    },
    language: 'zh',
    texts: {},
    groups: [],
    bot: { mode: 'none', timeoutMs: 3000, retries: 1 },
    decidedHere: true,
  });
  assert.ok(w.directory.shop(SHOP2), 'directory reloaded');
  assert.equal(w.pushed.at(-1)!.shops.sort(), [SHOP, SHOP2].sort());
  assert.ok((w.pushed.at(-1) as { owned: string[] }).owned.includes(SHOP2), 'adopted at once: the shims send it here');

  const updated = await w.api('PATCH', `/shops/${SHOP2}`, { welcome: 'Hello!' });
  assert.is(updated.json.name, 'Two', 'PATCH: unspecified fields are kept');
  assert.is(updated.json.welcome, 'Hello!');
  assert.is((await w.store.getShop(SHOP2))!.welcome, 'Hello!');
  assert.is((await w.api('GET', `/shops/${SHOP2}`)).json.strategy, 'round-robin');

  const replaced = await w.api('PUT', `/shops/${SHOP2}`, { name: 'Two again' });
  assert.is(replaced.status, 200, replaced.text);
  assert.equal(
    [replaced.json.name, replaced.json.welcome, replaced.json.strategy, replaced.json.queueEnabled],
    ['Two again', 'Two again', 'least-busy', true],
    'PUT: what the body leaves out takes its default, not its old value',
  );
  assert.is((await w.api('PUT', `/shops/${SHOP2}`, { welcome: 'no name' })).status, 400, 'PUT needs the whole shop');

  assert.is((await w.api('PUT', `/shops/${a('ann')}`, { name: 'x' })).status, 409, 'an agent cannot become a shop');

  assert.is((await w.api('DELETE', `/shops/${SHOP2}`)).status, 200);
  assert.is((await w.api('GET', `/shops/${SHOP2}`)).status, 404);
  assert.is((await w.api('DELETE', `/shops/${SHOP2}`)).status, 404);
  assert.equal(w.pushed.at(-1)!.shops, [SHOP]);
  assert.is(w.pushed.length, 4);
});

withWorld('a shop with open sessions cannot be deleted (409)', async (w) => {
  await w.online('ann');
  await w.visitorSays('v1', 'm1');
  const r = await w.api('DELETE', `/shops/${SHOP}`);
  assert.is(r.status, 409);
  assert.match(r.json.detail, /1 open sessions/);
});

withWorld('agents: add with maxSessions, read, remove; the watch list follows', async (w) => {
  const added = await w.api('PUT', `/shops/${SHOP}/agents/${a('cat')}`, { maxSessions: 3 });
  assert.is(added.status, 200, added.text);
  assert.equal(added.json, {
    jid: a('cat'),
    status: 'standard',
    shops: [{ shop: SHOP, maxSessions: 3, sessions: 0, missedChats: 0, missedInRow: 0 }],
    resources: [],
  });
  assert.ok(w.pushed.at(-1)!.agents.includes(a('cat')));
  assert.ok(w.directory.isAgent(a('cat')));

  await w.online('cat', 'chat');
  const got = await w.api('GET', `/agents/${a('cat')}`);
  assert.equal(got.json.resources, [{ resource: 'pc', node: 'node1', show: 'chat', priority: 0 }]);

  assert.is((await w.api('PUT', `/shops/${SHOP}/agents/${a('cat')}`, { maxSessions: 7 })).json.shops[0].maxSessions, 7);
  assert.is((await w.api('PUT', `/shops/${SHOP}/agents/${SHOP}`, {})).status, 409, 'a shop cannot be an agent');
  assert.is((await w.api('PUT', `/shops/${a('nope')}/agents/${a('cat')}`, {})).status, 404);

  assert.is((await w.api('DELETE', `/shops/${SHOP}/agents/${a('cat')}`)).status, 200);
  assert.is((await w.api('DELETE', `/shops/${SHOP}/agents/${a('cat')}`)).status, 404);
  assert.not.ok(w.pushed.at(-1)!.agents.includes(a('cat')));
  assert.not.ok(w.directory.isAgent(a('cat')));
});

withWorld('new capacity drains the queue: adding an agent serves the waiting visitor', async (w) => {
  await w.visitorSays('v1', 'm1'); // nobody online: v1 waits
  assert.equal(
    (await w.api('GET', `/queue?shop=${SHOP}`)).json.map((e: { visitor: string }) => e.visitor),
    [a('v1')],
  );
  w.sent.length = 0;
  await w.api('PUT', `/shops/${SHOP}/agents/${a('cat')}`, { maxSessions: 2 });
  await w.api('PUT', `/agents/${a('cat')}/status`, { status: 'always-on' }); // serves without a client
  assert.equal((await w.api('GET', `/queue?shop=${SHOP}`)).json, []);
  const sessions = (await w.api('GET', '/sessions')).json;
  assert.equal(
    sessions.map((s: { visitor: string; agent: string }) => [s.visitor, s.agent]),
    [[a('v1'), a('cat')]],
  );
  assert.ok(
    w.sent.some((s) => s.attrs.to === a('cat')),
    'held message relayed to cat',
  );
});

withWorld('agent status: set, read back, unknown agent 404', async (w) => {
  const r = await w.api('PUT', `/agents/${a('ann')}/status`, { status: 'dnd' });
  assert.is(r.status, 200, r.text);
  assert.is(r.json.status, 'dnd');
  assert.is((await w.store.getAgent(a('ann')))!.status, 'dnd');
  assert.is((await w.api('GET', `/agents/${a('ann')}`)).json.status, 'dnd');
  assert.is((await w.api('PUT', `/agents/${a('ghost')}/status`, { status: 'dnd' })).status, 404);
  assert.is((await w.api('GET', `/agents/${a('ghost')}`)).status, 404);
});

withWorld('sessions: list, filter by shop, transfer (409 when refused), close', async (w) => {
  await w.online('ann');
  await w.visitorSays('v1', 'm1');
  await w.visitorSays('v2', 'm2'); // ann is full, bob offline: v2 waits
  const all = (await w.api('GET', '/sessions')).json;
  assert.equal(
    all.map((s: { visitor: string; agent: string; shop: string }) => [s.shop, s.visitor, s.agent]),
    [[SHOP, a('v1'), a('ann')]],
  );
  assert.equal((await w.api('GET', `/sessions?shop=${SHOP}`)).json.length, 1);
  assert.is((await w.api('GET', `/sessions?shop=${a('nope')}`)).status, 404);
  assert.equal(
    (await w.api('GET', `/queue?shop=${SHOP}`)).json.map((e: { visitor: string }) => e.visitor),
    [a('v2')],
  );

  const refused = await w.api('POST', '/sessions/transfer', { shop: SHOP, visitor: a('v1'), to: a('bob') });
  assert.is(refused.status, 409, refused.text);
  assert.match(refused.json.detail, /not available/);
  assert.is((await w.api('POST', '/sessions/transfer', { shop: SHOP, visitor: a('v9'), to: a('bob') })).status, 404);

  await w.online('bob'); // takes v2 from the queue
  await w.api('PUT', `/shops/${SHOP}/agents/${a('bob')}`, { maxSessions: 2 });
  w.sent.length = 0;
  const moved = await w.api('POST', '/sessions/transfer', { shop: SHOP, visitor: a('v1'), to: a('bob'), reason: 'billing' });
  assert.is(moved.status, 200, moved.text);
  assert.is(w.desk.view.sessions(SHOP).find((x) => x.visitor === a('v1'))!.agent, a('bob'));
  assert.ok(
    w.sent.some((s) => s.attrs.to === a('bob')),
    'bob told about the transfer',
  );

  const closed = await w.api('POST', '/sessions/close', { shop: SHOP, visitor: a('v1') });
  assert.is(closed.status, 200, closed.text);
  assert.is(
    w.desk.view.sessions(SHOP).find((x) => x.visitor === a('v1')),
    undefined,
  );
  assert.is((await w.api('POST', '/sessions/close', { shop: SHOP, visitor: a('v1') })).status, 404);
});

withWorld('/metrics: metric names, a decision counted by verdict, gauges read from the store', async (w) => {
  await w.online('ann');
  await w.visitorSays('v1', 'm1');
  const text = (await w.api('GET', '/metrics', undefined, null)).text;
  for (const name of [
    'consult_stanzas_total',
    'consult_decision_seconds_bucket',
    'consult_open_sessions',
    'consult_queue_length',
    'consult_shops_owned 1',
    'consult_shim_connections',
  ]) {
    assert.ok(text.includes(name), name);
  }
  assert.match(text, /consult_stanzas_total\{action="rewrite"\} 1\n/);
  assert.match(text, /consult_decision_seconds_bucket\{le="0\.0001"\}/);
  assert.match(text, /consult_decision_seconds_count 1\n/);
  assert.match(text, new RegExp(`consult_open_sessions\\{shop="${SHOP}"\\} 1\\n`));
  assert.match(text, new RegExp(`consult_queue_length\\{shop="${SHOP}"\\} 0\\n`));
  assert.match(text, /consult_shim_connections 0\n/);
  assert.match(text, /consult_journal_backlog 0\n/);
  assert.match(text, /consult_journal_batch_decisions_count [1-9]/, 'the session opened through a group commit');
  assert.match(text, /consult_journal_write_seconds_count\{outcome="ok"\} [1-9]/);
});

withWorld('consultctl import: a dry run prints the changes, the real run applies them, --prune removes what the file lacks', async (w) => {
  const file = writeConfig({
    shops: [
      {
        jid: SHOP,
        name: 'Shop One',
        welcome: 'New welcome',
        language: 'en',
        texts: { statusSet: 'Now {status}.' },
        agents: [{ jid: a('ann'), maxSessions: 3 }],
        groups: [{ name: 'vip', agents: [a('ann')], products: ['gold'] }],
      },
      {
        jid: a('shop2'),
        name: 'Two',
        agents: [{ jid: a('cat'), maxSessions: 2 }],
        groups: [{ name: 'all', isDefault: true, agents: [a('cat')] }], // cat joins in this same import
      },
    ],
  });
  const dry = await cli(w, ['import', file, '--dry-run']);
  assert.is(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, `~ shop ${SHOP}: welcome "Shop One" → "New welcome"`);
  assert.match(dry.stdout, `~ agent ${a('ann')} in ${SHOP}: maxSessions 1 → 3`);
  assert.match(dry.stdout, `+ shop ${a('shop2')} (Two)`);
  assert.match(dry.stdout, `+ agent ${a('cat')} in ${a('shop2')} (max 2)`);
  assert.match(dry.stdout, `~ groups of ${SHOP}: vip`);
  assert.match(dry.stdout, `~ groups of ${a('shop2')}: all`);
  assert.match(dry.stdout, '(dry run: 6 changes not applied)');
  assert.is((await w.store.getShop(SHOP))!.welcome, 'Shop One', 'a dry run changes nothing');

  const real = await cli(w, ['import', file]);
  assert.is(real.code, 0, real.stderr);
  const shop = (await w.store.getShop(SHOP))!;
  assert.equal([shop.welcome, shop.language, shop.texts], ['New welcome', 'en', { statusSet: 'Now {status}.' }]);
  assert.is(w.directory.membership(SHOP, a('ann'))!.maxSessions, 3);
  assert.ok(w.directory.shop(a('shop2')), 'the new shop is live');
  assert.equal(
    w.directory.shop(a('shop2'))!.groups.map((g) => [g.name, g.agents]),
    [['all', [a('cat')]]],
  );
  assert.match((await cli(w, ['import', file])).stdout, 'nothing to change');

  const pruned = await cli(w, ['import', file, '--prune']);
  assert.is(pruned.code, 0, pruned.stderr);
  assert.match(pruned.stdout, `- agent ${a('bob')} from ${SHOP}`);
  assert.is(w.directory.membership(SHOP, a('bob')), undefined);

  const bad = await cli(w, ['import', writeConfig({ shops: [{ jid: 'not a jid', name: 'x', agents: [] }] })]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /shops\[0\]\.jid must be a bare JID/);
});

withWorld("consultctl: lists, closes, and exits non-zero with the server's message on failure", async (w) => {
  await w.online('ann');
  await w.visitorSays('v1', 'm1');
  const list = await cli(w, ['sessions', '--shop', SHOP]);
  assert.is(list.code, 0, list.stderr);
  assert.equal(
    JSON.parse(list.stdout).map((s: { visitor: string }) => s.visitor),
    [a('v1')],
  );

  const shops = await cli(w, ['shops']);
  assert.is(JSON.parse(shops.stdout)[0].jid, SHOP);

  const set = await cli(w, ['shop', 'set', SHOP, '--strategy', 'random', '--queue', 'false']);
  assert.is(set.code, 0, set.stderr);
  assert.is((await w.store.getShop(SHOP))!.strategy, 'random');

  const close = await cli(w, ['close', SHOP, a('v1')]);
  assert.is(close.code, 0, close.stderr);
  assert.is(w.desk.view.sessions().length, 0);

  const again = await cli(w, ['close', SHOP, a('v1')]);
  assert.is(again.code, 1);
  assert.match(again.stderr, /404 no open session/);

  const badToken = await cli(w, ['--token', 'wrong', 'shops']);
  assert.is(badToken.code, 1);
  assert.match(badToken.stderr, /401/);

  // A value out of range is refused by consultctl itself, naming the flag, before anything is sent.
  const badField = await cli(w, ['agent', 'add', SHOP, a('cat'), '--max', '0']);
  assert.is(badField.code, 2);
  assert.match(badField.stderr, /--max must be an integer in 1\.\.1000/);

  const usage = await cli(w, ['frobnicate']);
  assert.is(usage.code, 2);
  assert.match(usage.stderr, /unknown command frobnicate/);
});

withWorld('groups through the API and consultctl: validated, one default, transfer to a group, removed', async (w) => {
  const tv = await w.api('PUT', `/shops/${SHOP}/groups/tv`, { agents: [a('bob')], products: ['sku-tv'], maxSessions: 2 });
  assert.is(tv.status, 200, tv.text);
  assert.equal(tv.json.groups, [{ name: 'tv', isDefault: false, agents: [a('bob')], products: ['sku-tv'], maxSessions: 2 }]);
  const outsider = await w.api('PUT', `/shops/${SHOP}/groups/x`, { agents: [a('zed')] });
  assert.is(outsider.status, 400);
  assert.match(outsider.json.detail, 'groups[1].agents must be agents of the shop');
  assert.is((await w.api('PUT', `/shops/${SHOP}/groups/bad name`, {})).status, 400);
  const set = await cli(w, ['group', 'set', SHOP, 'front', '--agents', a('ann'), '--default', 'true']);
  assert.is(set.code, 0, set.stderr);
  await cli(w, ['group', 'set', SHOP, 'tv', '--agents', a('bob'), '--products', 'sku-tv,sku-radio', '--default', 'true']);
  const groups = w.directory.shop(SHOP)!.groups;
  assert.equal(
    groups.map((g) => [g.name, g.isDefault, g.products]),
    [
      ['front', false, []],
      ['tv', true, ['sku-tv', 'sku-radio']],
    ],
    'one default: the newest',
  );
  await w.online('ann');
  await w.online('bob');
  await w.visitorSays('v1', 'm1'); // no product: the default group, tv
  assert.is(w.desk.view.sessions(SHOP)[0].agent, a('bob'));
  const moved = await cli(w, ['transfer', SHOP, a('v1'), '#front', '--reason', 'not a tv question']);
  assert.is(moved.code, 0, moved.stderr);
  assert.equal([w.desk.view.sessions(SHOP)[0].agent, w.desk.view.sessions(SHOP)[0].group], [a('ann'), 'front']);
  assert.is((await w.api('DELETE', `/shops/${SHOP}/groups/front`)).status, 200);
  assert.is((await w.api('DELETE', `/shops/${SHOP}/groups/front`)).status, 404);
  await w.api('DELETE', `/shops/${SHOP}/agents/${a('bob')}`);
  assert.equal(w.directory.shop(SHOP)!.groups[0].agents, [], 'a removed agent leaves its groups');
  const noUrl = await w.api('PUT', `/shops/${SHOP}`, { bot: { mode: 'bot-first' } });
  assert.is(noUrl.status, 400);
  assert.match(noUrl.json.detail, 'bot.url');
  const bot = await cli(w, ['bot', SHOP, 'human-first', '--bot-url', 'http://127.0.0.1:9/bot', '--timeout', '500ms']);
  assert.is(bot.code, 0, bot.stderr);
  assert.equal(w.directory.shop(SHOP)!.bot, { mode: 'human-first', url: 'http://127.0.0.1:9/bot', timeoutMs: 500, retries: 1 });
});

withWorld('archive: search, one session, CSV export, stats and /metrics, through the API and consultctl', async (w) => {
  await w.online('ann');
  await w.visitorSays('v1', 'm1');
  await w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}'><body id='r1'>hello, v1</body></message>`);
  await w.api('POST', '/sessions/close', { shop: SHOP, visitor: a('v1') });
  await w.filter(`<message type='consult' from='${a('v1')}/web' to='${SHOP}'><body id='rate'>5</body></message>`);
  await w.desk.settled();
  const found = await w.api('GET', `/archive?shop=${SHOP}&agent=${a('ann')}&from=2000-01-01T00:00:00Z`);
  assert.is(found.status, 200, found.text);
  assert.equal(
    found.json.items.map((r: { visitor: string; rating: number; closeReason: string }) => [r.visitor, r.rating, r.closeReason]),
    [[a('v1'), 5, 'admin']],
  );
  assert.is(found.json.next, null, 'one page');
  assert.equal((await w.api('GET', `/archive?visitor=${a('v2')}`)).json, { items: [], next: null });
  const one = await w.api('GET', `/archive/${found.json.items[0].id}`);
  assert.equal(
    one.json.lines.map((l: { role: string; text: string }) => [l.role, l.text]),
    [
      ['visitor', 'hi'],
      ['agent', 'hello, v1'],
    ],
  );
  assert.is((await w.api('GET', '/archive/nope')).status, 404);
  assert.is((await w.api('GET', '/archive?from=yesterday')).status, 400);
  const csv = await cli(w, ['archive', '--shop', SHOP, '--format', 'csv']);
  assert.is(csv.code, 0, csv.stderr);
  const rows = csv.stdout.trim().split('\r\n');
  assert.is(rows.length, 3);
  assert.match(rows[0], /^id,shop,visitor,agent/);
  assert.match(rows[2], 'hello, v1');
  const stats = JSON.parse((await cli(w, ['stats', '--shop', SHOP])).stdout);
  assert.equal(
    stats.map((s: { agent: string | null; sessions: number; csat: number }) => [s.agent, s.sessions, s.csat]),
    [
      [null, 1, 1],
      [a('ann'), 1, 1],
    ],
  );
  const metrics = (await w.api('GET', '/metrics')).text;
  assert.match(metrics, `consult_csat_ratio{shop="${SHOP}",agent=""} 1`);
  assert.match(metrics, `consult_rated_sessions{shop="${SHOP}",agent="${a('ann')}"} 1`);
  assert.match(metrics, `consult_first_response_seconds_count{shop="${SHOP}",group=""} 1`);
  assert.match(metrics, `consult_ratings_total{shop="${SHOP}",score="5"} 1`);
  assert.match(metrics, `consult_sessions_closed_total{shop="${SHOP}",reason="admin"} 1`);
  assert.not.match(metrics, '_avg', 'no averages over the archive');
});

withWorld('archive pages: limit, opaque cursor, next and Link until the last; consultctl follows them', async (w) => {
  // 1,001 sessions, 250 of them ending at the same moment: more than consultctl's page of 1,000.
  const ids = Array.from({ length: 1001 }, (_, i) => `s${String(i).padStart(4, '0')}`);
  await w.archive.put(
    ids.map((id, i) => {
      const endedAt = 1_700_000_000_000 + (i < 250 ? 0 : i) * 1000;
      return closedSession({ id, shop: SHOP, visitor: a(`v${i}`), agent: a('ann'), endedAt });
    }),
  );
  const seen: string[] = [];
  let page = await w.api('GET', `/archive?shop=${SHOP}&limit=300`);
  for (let n = 1; ; n++) {
    assert.is(page.status, 200, page.text);
    seen.push(...page.json.items.map((r: { id: string }) => r.id));
    if (page.json.next === null) {
      assert.is(n, 4, 'three full pages and the rest');
      break;
    }
    assert.is(page.json.items.length, 300);
    page = await w.api('GET', `/archive?shop=${SHOP}&limit=300&cursor=${encodeURIComponent(page.json.next)}`);
  }
  assert.is(new Set(seen).size, 1001, 'no session twice');
  const newestFirst = [...ids].reverse(); // later ends first; the 250 equal ends by id, descending
  assert.equal(seen, newestFirst);

  const res = await fetch(`${w.url}/archive?shop=${SHOP}&limit=1000&format=csv`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const link = res.headers.get('link') ?? '';
  assert.match(link, /^<\/archive\?[^>]*cursor=[^>]+>; rel="next"$/);
  const rest = await fetch(`${w.url}${/<([^>]+)>/.exec(link)![1]}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal([rest.headers.get('link'), (await rest.text()).trim().split('\r\n').length], [null, 2], 'the header and the last session');

  const all = await cli(w, ['archive', '--shop', SHOP]);
  assert.is(all.code, 0, all.stderr);
  assert.equal(
    JSON.parse(all.stdout).map((r: { id: string }) => r.id),
    newestFirst,
    'consultctl archive: every page, as one array',
  );
  const csv = await cli(w, ['archive', '--shop', SHOP, '--format', 'csv']);
  assert.equal(csv.stdout.trim().split('\r\n').length, 1002, 'one header, one row per session');
  const few = await cli(w, ['archive', '--shop', SHOP, '--limit', '3']);
  assert.equal(JSON.parse(few.stdout).length, 3);
  assert.is((await w.api('GET', '/archive?cursor=bm90LW91cnM')).status, 400, 'a cursor the API did not give');
});

test.run();
