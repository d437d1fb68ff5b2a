// The real sidecar process: SIGHUP drains and exits 0 as SIGTERM does (a closed terminal must not kill it without
// ending its streams and handing its shops over); the example config's admin token and short ones stop the start
// with an error that names admin.token.
import fs from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StanzaFilterClient, type SidecarMessage } from '../../src/gen/consult/v1/filter.js';
import { writeConfig } from '../support/sidecar.js';
import { type SidecarOutput, spawnSidecarOutput } from '../support/sidecar-process.js';
import { waitUntil } from '../support/wait.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'hup.test';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** Waits for the exit, or kills the process after `ms` (a sidecar that should have refused to start). */
const exitWithin = async (s: SidecarOutput, ms: number) => {
  const timer = setTimeout(() => s.child.kill('SIGKILL'), ms);
  try {
    return await s.exited;
  } finally {
    clearTimeout(timer);
  }
};

test('SIGHUP: the shim stream is ended, shops handed over, exit 0 (as SIGTERM)', async () => {
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const config = writeConfig({
    admin: { port: adminPort, token: 'hup-test-admin-token' },
    shops: [{ jid: `shop@${D}`, name: 'Hup', agents: [{ jid: `ann@${D}`, maxSessions: 2 }] }],
  });
  const s = spawnSidecarOutput(config, grpcPort);
  const client = new StanzaFilterClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  try {
    await waitUntil('admin API listening', () => s.all().includes('admin API listening'));
    const call = client.filterStream();
    const got: SidecarMessage[] = [];
    const ended = new Promise<string>((resolve) => {
      call.on('data', (m: SidecarMessage) => got.push(m));
      call.on('end', () => resolve('end'));
      call.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code}`));
    });
    call.write({ hello: { node: 'ejabberd@hup', hosts: [D], shimVersion: 't', clusterNodes: [], features: [] } });
    await waitUntil('the watch list', () => got.some((m) => m.watch));
    s.child.kill('SIGHUP');
    const exit = await exitWithin(s, 20_000);
    assert.equal(exit, { code: 0, signal: null }, s.all());
    assert.ok(await Promise.race([ended, new Promise((r) => setTimeout(() => r(false), 2000))]), 'the stream ended');
    const lines = s
      .all()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; signal?: string });
    assert.ok(
      lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGHUP'),
      'drained as for SIGTERM',
    );
    assert.is(lines.at(-1)?.msg, 'stopped');
  } finally {
    client.close();
    s.child.kill('SIGKILL');
  }
});

test('the example config (its placeholder admin token) and a short token stop the start, naming admin.token', async () => {
  const example = JSON.parse(fs.readFileSync(path.join(repoRoot, 'config/consult.example.json'), 'utf8'));
  for (const [what, token, message] of [
    ['the example placeholder', example.admin.token, /admin\.token is the example config's placeholder/],
    ['a short token', 'short-token', /admin\.token must be a string of at least 16 characters/],
  ] as const) {
    // The example as it is, but on ports and a store of this test's own (should it start anyway).
    const config = writeConfig({ ...example, store: 'memory:', admin: { ...example.admin, port: await freePort(), token } });
    const s = spawnSidecarOutput(config, await freePort());
    const exit = await exitWithin(s, 15_000);
    assert.is(exit.code, 2, `${what}: refused to start (2: a setting to fix, not a failure to retry)\n${s.all()}`);
    assert.match(s.all(), message);
    assert.not.match(s.all(), /sidecar listening/);
  }
});

test.run();
