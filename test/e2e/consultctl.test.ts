// consultctl as a process against a small HTTP server that records what reaches it: a wrong number, duration,
// true|false or choice exits 2 naming the flag with nothing sent; good values arrive converted (--timeout 3s as
// 3000 ms); the admin token and URL from CONSULT_ADMIN_TOKEN, CONSULT_CONFIG and the run directory; --version.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOKEN = 'consultctl-test-token';
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Seen {
  method: string;
  url: string;
  authorization?: string;
  body: unknown;
}
const seen: Seen[] = [];
const server = http.createServer((req, res) => {
  let text = '';
  req.on('data', (d) => (text += d));
  req.on('end', () => {
    seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body: text ? JSON.parse(text) : undefined });
    res.setHeader('content-type', 'application/json');
    res.end(req.url === '/shops' ? '[]' : '{"ok":true}');
  });
});
let base = '';

/** consultctl (src/cli.ts under tsx) with only the CONSULT_* variables given here (run asynchronously: the server is in this process). */
const ctl = async (args: string[], env: Record<string, string> = {}) => {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONSULT_')));
  // An empty run directory unless the test gives one: no token from a checkout's .run.
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consultctl-run-'));
  try {
    return await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'src/cli.ts', ...args],
        { cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { ...inherited, CONSULT_RUN_DIR: runDir, ...env } },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr: stderr.trim() }),
      );
    });
  } finally {
    fs.rmSync(runDir, { recursive: true, force: true });
  }
};

test.before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
test.after(() => {
  server.close();
});

test('a wrong number, duration, true|false or choice: exit 2 naming the flag, and nothing sent', async () => {
  const cases: [string[], RegExp][] = [
    [['agent', 'add', 'shop@d', 'ann@d', '--max', 'abc'], /^consultctl: --max must be an integer in 1\.\.1000$/],
    [
      ['bot', 'shop@d', 'bot-first', '--bot-url', 'http://127.0.0.1:9/bot', '--timeout', '3000'],
      /^consultctl: --timeout must be a duration .* with its unit/,
    ],
    [['bot', 'shop@d', 'bot-first', '--timeout', 'abc'], /^consultctl: --timeout must be a duration/],
    [['bot', 'shop@d', 'bot-first', '--retries', 'many'], /^consultctl: --retries must be an integer in 0\.\.5$/],
    [['bot', 'shop@d', 'always'], /^consultctl: bot mode must be one of none, bot-first, human-first$/],
    [['shop', 'set', 'shop@d', '--queue', 'yes'], /^consultctl: --queue must be true or false$/],
    [['group', 'set', 'shop@d', 'tv', '--default', 'no'], /^consultctl: --default must be true or false$/],
    [['archive', '--limit=-3'], /^consultctl: --limit must be a positive integer$/],
    [['archive', '--from', 'last week'], /^consultctl: --from must be ms since the epoch or an ISO 8601 date/],
    [['agent', 'status', 'ann@d', 'busy'], /^consultctl: status must be one of standard, dnd, always-on$/],
    [['canned', 'set', 'shop@d', 'refund'], /^consultctl: missing canned reply text$/m],
    [['canned', 'shop@d', '--group', 'a b'], /^consultctl: --group must be 1 to 64 characters without spaces, commas or slashes$/],
    [
      ['import', path.join(ROOT, 'config/consult.example.json'), '--dry-run'],
      /^consultctl: config: admin\.token is the example config's placeholder/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await ctl(['--url', base, '--token', TOKEN, ...args]);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(seen, [], `nothing sent for ${args.join(' ')}`);
  }
});

test('good values arrive as the API takes them: --timeout 3s as 3000 ms, --max as a number', async () => {
  seen.length = 0;
  const bot = await ctl([
    '--url',
    base,
    '--token',
    TOKEN,
    'bot',
    'shop@d',
    'bot-first',
    '--bot-url',
    'http://127.0.0.1:9/bot',
    '--timeout',
    '3s',
    '--retries',
    '2',
  ]);
  assert.is(bot.code, 0, bot.stderr);
  const agent = await ctl(['--url', base, '--token', TOKEN, 'agent', 'add', 'shop@d', 'ann@d', '--max', '4']);
  assert.is(agent.code, 0, agent.stderr);
  assert.equal(
    seen.map((s) => [s.method, s.url, s.body]),
    [
      ['PATCH', '/shops/shop%40d', { bot: { mode: 'bot-first', url: 'http://127.0.0.1:9/bot', timeoutMs: 3000, retries: 2 } }],
      ['PATCH', '/shops/shop%40d/agents/ann%40d', { maxSessions: 4 }],
    ],
  );
  assert.ok(seen.every((s) => s.authorization === `Bearer ${TOKEN}`));
});

test('the token and URL: CONSULT_ADMIN_TOKEN, the config CONSULT_CONFIG names, the run directory', async () => {
  const port = new URL(base).port;
  seen.length = 0;
  assert.is((await ctl(['--url', base, 'shops'], { CONSULT_ADMIN_TOKEN: 'from-the-environment' })).code, 0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consultctl-'));
  try {
    const config = path.join(dir, 'consult.yaml');
    fs.writeFileSync(config, `admin:\n  host: 0.0.0.0\n  port: ${port}\n  token: from-the-config-file\n`);
    assert.is((await ctl(['shops'], { CONSULT_CONFIG: config })).code, 0, 'URL and token from the sidecar config');
    assert.is((await ctl(['shops'], { CONSULT_CONFIG: config, CONSULT_ADMIN_TOKEN: 'the-variable-wins-over-it' })).code, 0);
    fs.writeFileSync(path.join(dir, 'admin-token'), 'from-the-run-directory\n');
    fs.writeFileSync(path.join(dir, 'consult.json'), JSON.stringify({ admin: { port: Number(port) } }));
    assert.is((await ctl(['shops'], { CONSULT_RUN_DIR: dir })).code, 0, 'as scripts/run.sh leaves them');
    assert.equal(
      seen.map((s) => s.authorization),
      ['Bearer from-the-environment', 'Bearer from-the-config-file', 'Bearer the-variable-wins-over-it', 'Bearer from-the-run-directory'],
    );
    seen.length = 0;
    const bad = await ctl(['shops'], { CONSULT_CONFIG: config, CONSULT_ADMIN_PORT: 'abc' });
    assert.is(bad.code, 2);
    assert.match(bad.stderr, /^consultctl: CONSULT_ADMIN_PORT: admin\.port must be an integer/);
    const none = await ctl(['--url', base, 'shops']);
    assert.is(none.code, 2);
    assert.match(none.stderr, /no admin token/);
    assert.equal(seen, [], 'nothing sent without a token or with a bad setting');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a token of admin.tokens: the first with role admin, or --token-name NAME; a hashed one is refused', async () => {
  const port = new URL(base).port;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consultctl-'));
  try {
    const config = path.join(dir, 'consult.json');
    fs.writeFileSync(path.join(dir, 'ops-token'), 'the-operator-token-from-a-file\n');
    const tokens = [
      { name: 'dash', role: 'read', token: 'the-dashboard-read-token' },
      { name: 'ops', role: 'operator', tokenFile: path.join(dir, 'ops-token') },
      { name: 'boss', role: 'admin', token: 'the-first-admin-token-here' },
      { name: 'later', role: 'admin', token: 'the-second-admin-token-here' },
      { name: 'hashed', role: 'admin', sha256: 'a'.repeat(64) },
    ];
    fs.writeFileSync(config, JSON.stringify({ admin: { host: '127.0.0.1', port: Number(port), tokens } }));
    seen.length = 0;
    for (const args of [['shops'], ['--token-name', 'ops', 'shops'], ['--token-name', 'dash', 'shops']]) {
      const r = await ctl(args, { CONSULT_CONFIG: config });
      assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    // --token-name asks for that one: over CONSULT_ADMIN_TOKEN too (only --token is over it)
    assert.is(
      (await ctl(['--token-name', 'later', 'shops'], { CONSULT_CONFIG: config, CONSULT_ADMIN_TOKEN: 'from-the-environment' })).code,
      0,
    );
    assert.equal(
      seen.map((s) => s.authorization),
      [
        'Bearer the-first-admin-token-here',
        'Bearer the-operator-token-from-a-file',
        'Bearer the-dashboard-read-token',
        'Bearer the-second-admin-token-here',
      ],
    );
    seen.length = 0;
    const unknown = await ctl(['--token-name', 'nobody', 'shops'], { CONSULT_CONFIG: config });
    assert.equal(
      [unknown.code, unknown.stderr],
      [2, 'consultctl: CONSULT_CONFIG has no admin token named nobody (it has: dash, ops, boss, later, hashed)'],
    );
    const hashed = await ctl(['--token-name', 'hashed', 'shops'], { CONSULT_CONFIG: config });
    assert.is(hashed.code, 2);
    assert.match(hashed.stderr, /only by its sha256: pass the token itself with --token/);
    const noConfig = await ctl(['--url', base, '--token-name', 'boss', 'shops']);
    assert.is(noConfig.code, 2);
    assert.match(noConfig.stderr, /--token-name needs CONSULT_CONFIG/);
    assert.equal(seen, [], 'nothing sent');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('webhook: the requests it stands for; the secret from a file or the environment, never an argument', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consultctl-'));
  try {
    const secretFile = path.join(dir, 'hook-secret');
    fs.writeFileSync(secretFile, 'a-webhook-secret-from-a-file\n');
    seen.length = 0;
    const run = (args: string[], env: Record<string, string> = {}) => ctl(['--url', base, '--token', TOKEN, ...args], env);
    for (const [args, env] of [
      [['webhook', 'shop@d']],
      [['webhook', 'set', 'shop@d', 'https://hooks.example/consult', '--secret-file', secretFile, '--messages', 'true', '--timeout', '2s']],
      [['webhook', 'set', 'shop@d', 'https://hooks.example/other'], { CONSULT_WEBHOOK_SECRET: 'a-webhook-secret-from-the-env' }],
      [['webhook', 'set', 'shop@d', 'https://hooks.example/kept']],
      [['webhook', 'off', 'shop@d']],
      [['webhook', 'rm', 'shop@d']],
    ] as [string[], Record<string, string>?][]) {
      const r = await run(args, env);
      assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal(
      seen.map((s) => [s.method, s.url, s.body]),
      [
        ['GET', '/shops/shop%40d/events', undefined],
        [
          'PUT',
          '/shops/shop%40d/events',
          { url: 'https://hooks.example/consult', secret: 'a-webhook-secret-from-a-file', messages: true, timeoutMs: 2000 },
        ],
        ['PUT', '/shops/shop%40d/events', { url: 'https://hooks.example/other', secret: 'a-webhook-secret-from-the-env' }],
        ['PUT', '/shops/shop%40d/events', { url: 'https://hooks.example/kept' }],
        ['PUT', '/shops/shop%40d/events', { off: true }],
        ['DELETE', '/shops/shop%40d/events', undefined],
      ],
    );
    seen.length = 0;
    const badUrl = await run(['webhook', 'set', 'shop@d', 'ftp://x']);
    assert.equal([badUrl.code, badUrl.stderr], [2, 'consultctl: webhook URL must be an http:// or https:// URL']);
    const badTimeout = await run(['webhook', 'set', 'shop@d', 'https://h.example/', '--timeout', '5min']);
    assert.is(badTimeout.code, 2);
    assert.match(badTimeout.stderr, /^consultctl: --timeout must be a duration from 100ms to 60s/);
    const noFile = await run(['webhook', 'set', 'shop@d', 'https://h.example/', '--secret-file', path.join(dir, 'none')]);
    assert.is(noFile.code, 2);
    assert.match(noFile.stderr, /^consultctl: --secret-file: cannot read/);
    assert.equal(seen, [], 'nothing sent');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('canned replies and tag filters: the requests they stand for', async () => {
  seen.length = 0;
  const run = (...args: string[]) => ctl(['--url', base, '--token', TOKEN, ...args]);
  for (const args of [
    ['canned', 'set', 'shop@d', 'refund', 'Dear {visitor},', 'it is on its way.'],
    ['canned', 'set', 'shop@d', 'hours', '9 to 5', '--group', 'tv'],
    ['canned', 'shop@d'],
    ['canned', 'rm', 'shop@d', 'refund', '--group', 'tv'],
    ['stats', '--shop', 'shop@d', '--tag', 'vip'],
  ]) {
    const r = await run(...args);
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  assert.equal(
    seen.map((s) => [s.method, s.url, s.body]),
    [
      ['PUT', '/shops/shop%40d/canned/refund', { text: 'Dear {visitor}, it is on its way.' }],
      ['PUT', '/shops/shop%40d/canned/hours?group=tv', { text: '9 to 5' }],
      ['GET', '/shops/shop%40d/canned', undefined],
      ['DELETE', '/shops/shop%40d/canned/refund?group=tv', undefined],
      ['GET', '/stats?shop=shop%40d&tag=vip', undefined],
    ],
  );
});

test('--version on both bins prints the package version', async () => {
  assert.equal(await ctl(['--version']), { code: 0, stdout: `${VERSION}\n`, stderr: '' });
  const main = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', '--version'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal([main.status, main.stdout], [0, `${VERSION}\n`]);
});

test.run();
