// The sidecar's config file: defaults, and errors that name the field (the sidecar stops at start with them).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, parseConfig } from '../../../src/domain/config.js';
import { DEFAULT_TEXTS, render, resolveTexts } from '../../../src/domain/texts.js';
import { isJid } from '../../../src/xmpp/jid.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const shop = (extra: Record<string, unknown> = {}) => ({ shops: [{ jid: 'shop@d.test', name: 'S', agents: [], ...extra }] });
const fails = (raw: unknown, re: RegExp) => {
  try {
    parseConfig(raw);
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`accepted: ${JSON.stringify(raw)}`);
};

test('limits: defaults, top-level defaults per shop, per-shop override, ranges', () => {
  const c = parseConfig({
    limits: { queueMax: 50 },
    shops: [
      { jid: 'a@d.test', name: 'A', agents: [] },
      { jid: 'b@d.test', name: 'B', agents: [], limits: { keptPerVisitor: 7 } },
    ],
  });
  assert.equal(
    c.shops.map((s) => [s.limits.queueMax, s.limits.keptPerVisitor, s.limits.historyPerSession]),
    [
      [50, 100, 20],
      [50, 7, 20],
    ],
  );
  assert.is(c.maxPendingDecisions, 20_000);
  fails(shop({ limits: { queueMax: 0 } }), /shops\[0\]\.limits\.queueMax must be an integer in 1\.\.1000000/);
  fails(shop({ limits: { queueLength: 5 } }), /shops\[0\]\.limits\.queueLength is not a known key; use one of queueMax/);
});

test('groups, bot and archive: defaults, and errors that name the field', () => {
  const c = parseConfig(
    shop({
      agents: [{ jid: 'ann@d.test' }],
      groups: [{ name: 'tv', isDefault: true, agents: ['ann@d.test'], products: ['sku-1'] }],
      bot: { mode: 'bot-first', url: 'http://127.0.0.1:9000/bot' },
    }),
  );
  assert.equal(c.shops[0].groups, [{ name: 'tv', isDefault: true, agents: ['ann@d.test'], products: ['sku-1'] }]);
  assert.equal(c.shops[0].bot, { mode: 'bot-first', url: 'http://127.0.0.1:9000/bot', timeoutMs: 3000, retries: 1 });
  assert.equal(c.archive, { retentionDays: 180, ratingWindowSec: 600 });
  assert.equal(parseConfig(shop()).shops[0].bot.mode, 'none');
  fails(shop({ groups: [{ name: 'tv', agents: ['zed@d.test'] }] }), /shops\[0\]\.groups\[0\]\.agents must be agents of the shop/);
  fails(
    shop({
      groups: [
        { name: 'a', isDefault: true },
        { name: 'b', isDefault: true },
      ],
    }),
    /at most one default group/,
  );
  fails(shop({ groups: [{ name: 'a,b' }] }), /groups\[0\]\.name must be/);
  fails(shop({ bot: { mode: 'bot-first' } }), /shops\[0\]\.bot\.url must be given/);
  fails(shop({ bot: { mode: 'always', url: 'http://x' } }), /bot\.mode must be one of none, bot-first, human-first/);
  fails({ ...shop(), archive: { retentionDays: 0 } }, /archive\.retentionDays must be an integer/);
});

test('texts: Chinese by default, English on request, overrides validated by name and placeholder', () => {
  const zh = parseConfig(shop()).shops[0];
  assert.equal([zh.language, zh.noAgentText], ['zh', '当前没有客服在线，请稍后再试。']);
  const en = parseConfig(shop({ language: 'en', texts: { reminder: '{visitor} waits ({seconds}s)' } })).shops[0];
  assert.match(en.noAgentText, 'No agent is available');
  const texts = resolveTexts(en.language, en.texts);
  assert.is(render(texts.reminder, { visitor: 'v@d', seconds: 3 }), 'v@d waits (3s)');
  assert.is(texts.closedToVisitor, DEFAULT_TEXTS.en.closedToVisitor);
  fails(shop({ language: 'de' }), /shops\[0\]\.language must be one of zh, en/);
  fails(shop({ texts: { hello: 'x' } }), /shops\[0\]\.texts\.hello is not a text/);
  fails(shop({ texts: { closedToVisitor: 'bye {visitor}' } }), /closedToVisitor uses \{visitor\}; it may use no values/);
  fails(shop({ texts: { reminder: '' } }), /reminder must be a string of 1 to 2000 characters/);
  for (const lang of ['zh', 'en'] as const) {
    for (const [key, template] of Object.entries(DEFAULT_TEXTS[lang])) {
      assert.not.ok(parseConfig(shop({ language: lang, texts: { [key]: template } })) === undefined, `${lang}.${key} is valid`);
    }
  }
});

test('JIDs are checked as RFC 7622 does: lengths, forbidden and control characters, labels', () => {
  for (const ok of ['a@b', 'shop_2@dev.fsll.tech', '客服@例子.中国', 'a@b/res with space', 'b.example', `${'x'.repeat(1023)}@d`])
    assert.ok(isJid(ok), ok);
  for (const bad of [
    '',
    '@d',
    'a@',
    'a\u0000b@d',
    `${'x'.repeat(1024)}@d`,
    'a b@d',
    'a"b@d',
    'a@b@c',
    'a@d..e',
    'a@d/',
    `a@${'l'.repeat(64)}.com`,
    'a@d/\u0007',
  ])
    assert.not.ok(isJid(bad), JSON.stringify(bad));
  fails({ shops: [{ jid: 'sh op@d', name: 'S', agents: [] }] }, /shops\[0\]\.jid must be a bare JID/);
});

test('admin.token: refused when it is the example placeholder or shorter than 16 characters, naming the field', () => {
  const example = JSON.parse(fs.readFileSync(path.join(repoRoot, 'config/consult.example.json'), 'utf8'));
  fails(example, /admin\.token is the example config's placeholder \(change-me-admin-token\)/);
  fails({ ...shop(), admin: { token: 'fifteen-chars!!' } }, /admin\.token must be a string of at least 16 characters/);
  fails({ ...shop(), admin: { token: 42 } }, /admin\.token must be a string of at least 16 characters/);
  fails({ ...shop(), admin: { token: '' } }, /admin\.token must be a string of at least 16 characters/);
  const ok = parseConfig({ ...shop(), admin: { token: 'sixteen-chars!!!' } });
  assert.is(ok.admin.token, 'sixteen-chars!!!');
  assert.is(parseConfig(shop()).admin.token, undefined, 'no token: no admin API, no error');
  assert.equal([ok.admin.maxAuthFailures, ok.admin.authWindowSec], [10, 60]);
  fails(
    { ...shop(), admin: { token: 'sixteen-chars!!!', maxAuthFailures: 0 } },
    /admin\.maxAuthFailures must be an integer in 1\.\.100000/,
  );
});

test('bounds: bot answers, streams per node', () => {
  const c = parseConfig(shop());
  assert.equal([c.maxBotAnswerBytes, c.grpc.maxStreamsPerNode], [65536, 4]);
  fails({ ...shop(), maxBotAnswerBytes: 10 }, /config: maxBotAnswerBytes must be an integer in 1024\.\.16777216/);
  fails({ ...shop(), grpc: { maxStreamsPerNode: 0 } }, /grpc\.maxStreamsPerNode must be an integer in 1\.\.1000/);
});

test.run();
