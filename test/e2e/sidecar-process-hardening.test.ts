// The real sidecar process: SIGHUP drains and exits 0 as SIGTERM does (a closed terminal must not kill it without
// ending its streams and handing its shops over); the example config's admin token and short ones stop the start
// with an error that names admin.token.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StanzaFilterClient, type SidecarMessage } from '../../src/gen/consult/v1/filter.js';
import { writeConfig } from '../support/sidecar.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'hup.test';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

function sidecar(config: string, grpcPort: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', config, '--grpc-port', String(grpcPort)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, out: () => out };
}

const until = async (what: string, ok: () => boolean, ms = 20_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** Waits for the exit, or kills the process after `ms` (a sidecar that should have refused to start). */
const exitWithin = async (s: ReturnType<typeof sidecar>, ms: number) => {
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
  const s = sidecar(config, grpcPort);
  const client = new StanzaFilterClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  try {
    await until('admin API listening', () => s.out().includes('admin API listening'));
    const call = client.filterStream();
    const got: SidecarMessage[] = [];
    const ended = new Promise<string>((resolve) => {
      call.on('data', (m: SidecarMessage) => got.push(m));
      call.on('end', () => resolve('end'));
      call.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code}`));
    });
    call.write({ hello: { node: 'ejabberd@hup', hosts: [D], shimVersion: 't', clusterNodes: [] } });
    await until('the watch list', () => got.some((m) => m.watch));
    s.child.kill('SIGHUP');
    const exit = await exitWithin(s, 20_000);
    assert.equal(exit, { code: 0, signal: null }, s.out());
    assert.ok(await Promise.race([ended, new Promise((r) => setTimeout(() => r(false), 2000))]), 'the stream ended');
    const lines = s
      .out()
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
    const s = sidecar(config, await freePort());
    const exit = await exitWithin(s, 15_000);
    assert.is(exit.code, 1, `${what}: refused to start\n${s.out()}`);
    assert.match(s.out(), message);
    assert.not.match(s.out(), /sidecar listening/);
  }
});

test.run();
