// Guessing the admin token: an address that failed too often gets 429 with Retry-After (even with the right token)
// while other addresses are served; the failures are logged one line per address per interval, with their count.
// consultctl finds the token in --token, CONSULT_ADMIN_TOKEN, then the run directory's admin-token file.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startAdminServer } from '../../../src/admin/http.js';
import { parseConfig } from '../../../src/domain/config.js';
import { recordingLog } from '../../support/log.js';
import { Backends, adminParts, deskWorld } from '../../support/desk.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const D = 'auth.test';
const TOKEN = 'the-right-admin-token';

async function admin(o: { max?: number; windowMs?: number; logMs?: number } = {}) {
  const config = parseConfig({ shops: [{ jid: `shop@${D}`, name: 'S', agents: [] }] });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const { log, lines } = recordingLog();
  const server = await startAdminServer(
    {
      ...adminParts(w),
      token: TOKEN,
      log,
      defaultLimits: config.limits,
      ...(o.max ? { authFailures: { max: o.max, windowMs: o.windowMs ?? 60_000 } } : {}),
      ...(o.logMs ? { authLogIntervalMs: o.logMs } : {}),
    },
    '127.0.0.1',
    0,
  );
  return { server, lines, port: server.port };
}

/** GET /shops from a given local address (every 127.x address reaches 127.0.0.1 on Linux), on a fresh connection. */
const get = (port: number, token: string, from = '127.0.0.1') =>
  new Promise<{ status: number; retryAfter?: string; body: string }>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/shops', localAddress: from, agent: false, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });

test('3,000 wrong guesses: 429 with Retry-After after 10, a right token from that address too; others are served', async () => {
  const a = await admin();
  try {
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let batch = 0; batch < 30; batch++) {
      const got = await Promise.all(Array.from({ length: 100 }, (_, i) => get(a.port, `guess-${batch}-${i}`)));
      for (const g of got) {
        statuses.push(g.status);
        if (g.status === 429) retryAfter ??= g.retryAfter;
      }
    }
    assert.is(statuses.filter((s) => s === 401).length, 10, 'ten guesses are checked');
    assert.is(statuses.filter((s) => s === 429).length, 2990, 'the rest are refused unchecked');
    assert.ok(Number(retryAfter) > 0 && Number(retryAfter) <= 60, `Retry-After: ${retryAfter}`);
    const right = await get(a.port, TOKEN);
    assert.is(right.status, 429, 'the guessing address is refused even with the right token');
    assert.match(right.body, /too many failed authentications from 127\.0\.0\.1/);
    assert.is((await get(a.port, TOKEN, '127.0.0.2')).status, 200, 'another address is served');
    const warned = a.lines.filter((l) => l.msg === 'admin API: failed authentication');
    assert.is(warned.length, 1, 'one line within the interval');
    assert.equal(warned[0].fields.address, '127.0.0.1');
  } finally {
    await a.server.close();
  }
  // Closing tells the count of what the interval held back.
  const warned = a.lines.filter((l) => l.msg === 'admin API: failed authentication');
  assert.is(warned.length, 2);
  assert.is(
    warned.reduce((n, l) => n + (l.fields.failures as number), 0),
    3001,
    'every failure counted once: 3,000 guesses and the refused right token',
  );
});

test('the window ends: the address may try again; a success forgets earlier failures', async () => {
  const a = await admin({ max: 3, windowMs: 400, logMs: 200 });
  try {
    for (let i = 0; i < 3; i++) assert.is((await get(a.port, 'wrong')).status, 401);
    const refused = await get(a.port, TOKEN);
    assert.is(refused.status, 429);
    assert.is(refused.retryAfter, '1');
    await new Promise((r) => setTimeout(r, 450));
    assert.is((await get(a.port, TOKEN)).status, 200, 'served again after the window');
    for (let i = 0; i < 2; i++) assert.is((await get(a.port, 'wrong')).status, 401);
    assert.is((await get(a.port, TOKEN)).status, 200);
    for (let i = 0; i < 2; i++) assert.is((await get(a.port, 'wrong')).status, 401, 'the success started over');
    // One line per interval with its count: the first at once, the others when their interval ends.
    await new Promise((r) => setTimeout(r, 500));
    const warned = a.lines.filter((l) => l.msg === 'admin API: failed authentication');
    assert.ok(warned.length >= 2 && warned.length <= 4, JSON.stringify(warned));
    assert.is(
      warned.reduce((n, l) => n + (l.fields.failures as number), 0),
      8,
    );
  } finally {
    await a.server.close();
  }
});

const cli = (args: string[], env: Record<string, string | undefined>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const e: Record<string, string | undefined> = { ...process.env, ...env };
    for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), ...args],
      { cwd: repoRoot, env: e as NodeJS.ProcessEnv },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

test('consultctl: the token from --token, else CONSULT_ADMIN_TOKEN, else the run directory (URL from its consult.json)', async () => {
  const a = await admin();
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-run-'));
  try {
    fs.writeFileSync(path.join(runDir, 'admin-token'), `${TOKEN}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(runDir, 'consult.json'), JSON.stringify({ admin: { host: '127.0.0.1', port: a.port } }));
    const base = { CONSULT_RUN_DIR: runDir, CONSULT_ADMIN_URL: undefined, CONSULT_ADMIN_TOKEN: undefined };
    const fromFile = await cli(['shops'], base);
    assert.is(fromFile.code, 0, fromFile.stderr);
    assert.equal(
      JSON.parse(fromFile.stdout).map((s: { jid: string }) => s.jid),
      [`shop@${D}`],
    );
    const envFirst = await cli(['shops'], { ...base, CONSULT_ADMIN_TOKEN: 'from-the-environment' });
    assert.match(envFirst.stderr, /401/, 'the variable comes before the file');
    const flagFirst = await cli(['--token', TOKEN, 'shops'], { ...base, CONSULT_ADMIN_TOKEN: 'from-the-environment' });
    assert.is(flagFirst.code, 0, 'the flag comes before the variable');
    fs.rmSync(path.join(runDir, 'admin-token'));
    const none = await cli(['shops'], base);
    assert.is(none.code, 2);
    assert.match(
      none.stderr,
      new RegExp(`no admin token: pass --token, set CONSULT_ADMIN_TOKEN or CONSULT_CONFIG, or .*${path.join(runDir, 'admin-token')}`),
    );
    const help = await cli(['--help'], base);
    assert.match(
      help.stdout,
      /1\. --token TOKEN\s+2\. the environment variable CONSULT_ADMIN_TOKEN\s+3\. a token of the sidecar config named by CONSULT_CONFIG .*\s+admin\.token, else the first of admin\.tokens with role admin .*\s+--token-name NAME: the one of that name.*\s+4\. the file admin-token/,
    );
  } finally {
    fs.rmSync(runDir, { recursive: true, force: true });
    await a.server.close();
  }
});

test.run();
