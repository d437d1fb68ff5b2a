// Operations on the real sidecar process: grpc.health.v1, admin API and /metrics on the
// configured port, JSON logs, a graceful SIGTERM while a shim stream is open, and SIGTERM while
// decisions wait for the journal (each one is answered before the process exits 0).
import fs from 'node:fs';
import os from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import pg from 'pg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Action, Hook, StanzaFilterClient, type SidecarMessage, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { parseElement } from '../../src/xmpp/xml.js';
import { startPostgres } from '../support/postgres.js';
import { writeConfig } from '../support/sidecar.js';
import { spawnSidecarOutput } from '../support/sidecar-process.js';
import { waitUntil } from '../support/wait.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'ops.test';
const TOKEN = 'ops-test-admin-token';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

test('real sidecar: health SERVING, admin + /metrics, SIGTERM ends shim streams and exits 0 with JSON logs', async () => {
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const config = writeConfig({
    admin: { port: adminPort, token: TOKEN },
    shops: [{ jid: `shop@${D}`, name: 'Ops', agents: [{ jid: `ann@${D}`, maxSessions: 2, status: 'always-on' }] }],
  });
  const { child, stdout, stderr, exited } = spawnSidecarOutput(config, grpcPort);
  const channels: grpc.Client[] = [];
  try {
    await waitUntil('admin API listening', () => stdout().includes('admin API listening') || undefined, { timeoutMs: 15_000 });

    // grpc.health.v1 with a plain grpc-js client on the official service definition.
    const Health = grpc.makeClientConstructor(healthService, 'grpc.health.v1.Health');
    const health = new Health(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, (...args: any[]) => unknown>;
    channels.push(health);
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        health.check({ service }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r))),
      );
    assert.is((await check('')).status, 'SERVING');
    assert.is((await check('consult.v1.StanzaFilter')).status, 'SERVING');
    const unknown = await check('no.such.Service').catch((e: grpc.ServiceError) => e);
    assert.is((unknown as grpc.ServiceError).code, grpc.status.NOT_FOUND);

    // A shim's stream: hello, one stanza judged.
    const client = new StanzaFilterClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    channels.push(client);
    const stream = client.filterStream();
    const got: SidecarMessage[] = [];
    let streamDone = false;
    stream.on('data', (m: SidecarMessage) => got.push(m));
    stream.on('error', () => {
      streamDone = true;
    });
    stream.on('end', () => {
      streamDone = true;
    });
    stream.write({ hello: { node: 'ops@node', hosts: [D], shimVersion: 'test', clusterNodes: [], features: [] } });
    stream.write({
      filter: {
        seq: '1',
        hook: Hook.HOOK_FILTER_PACKET,
        host: D,
        stanza: Buffer.from(`<message type='consult' from='v1@${D}/web' to='shop@${D}'><body id='b1'>hi</body></message>`),
        deadlineMs: '0',
      },
    });
    const verdict = await waitUntil('verdict', () => got.find((m) => m.verdict)?.verdict, { timeoutMs: 15_000 });
    assert.is(verdict.action, Action.ACTION_REWRITE);

    const api = await fetch(`http://127.0.0.1:${adminPort}/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.is(api.status, 200);
    assert.equal(
      (await api.json()).map((s: { visitor: string }) => s.visitor),
      [`v1@${D}`],
    );
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(metrics, /consult_shim_connections 1\n/);
    assert.match(metrics, /consult_stanzas_total\{action="rewrite"\} 1\n/);
    assert.match(metrics, /process_cpu_seconds_total/, 'default process metrics');

    child.kill('SIGTERM');
    // A bound, not a measurement: the sidecar's own shutdown deadline is DRAIN_MS + 5 s.
    const { code } = await Promise.race([
      exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within 10 s\n${stdout()}${stderr()}`)), 10_000)),
    ]);
    assert.is(code, 0, `${stdout()}${stderr()}`);
    await waitUntil('shim stream ended by the sidecar', () => streamDone || undefined, { timeoutMs: 3000 });

    const lines = stdout().split('\n').filter(Boolean);
    const records = lines.map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        throw new Error(`not a JSON log line: ${l}`);
      }
    });
    for (const r of records)
      assert.ok(typeof r.msg === 'string' && typeof r.time === 'string' && typeof r.level === 'number', JSON.stringify(r));
    const msgs = records.map((r) => r.msg);
    assert.ok(msgs.includes('shutting down') && msgs.at(-1) === 'stopped', msgs.join(' | '));
    assert.is(stderr(), '', 'nothing on stderr');
  } finally {
    for (const c of channels) c.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test('SIGTERM while decisions wait for the journal: every pending one is answered (and durable), then exit 0', async () => {
  const postgres = await startPostgres();
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const N = 20;
  const config = writeConfig({
    store: postgres.url,
    admin: { port: adminPort, token: TOKEN },
    shops: [{ jid: `shop@${D}`, name: 'Ops', agents: [{ jid: `ann@${D}`, maxSessions: N, status: 'always-on' }] }],
  });
  const { child, all: output, exited } = spawnSidecarOutput(config, grpcPort);
  const locker = new pg.Client({ connectionString: postgres.url });
  let client: StanzaFilterClient | undefined;
  let locked = false;
  try {
    await waitUntil('admin API listening', () => output().includes('admin API listening') || undefined, { timeoutMs: 30_000 });
    // Hold every journal write: the sidecar's INSERTs wait for this lock, so its decisions wait for durability.
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE consult.journal IN EXCLUSIVE MODE');
    locked = true;

    client = new StanzaFilterClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    const c = client;
    const answered = new Map<number, Verdict>();
    const verdicts = Array.from(
      { length: N },
      (_, i) =>
        new Promise<Verdict>((resolve, reject) =>
          c.filter(
            {
              seq: String(i),
              hook: Hook.HOOK_FILTER_PACKET,
              host: D,
              stanza: Buffer.from(`<message type='consult' from='v${i}@${D}/web' to='shop@${D}'><body id='t${i}'>hi</body></message>`),
              deadlineMs: String(Date.now() + 60_000),
            },
            (e, v) => {
              if (e) return reject(e);
              answered.set(i, v!);
              resolve(v!);
            },
          ),
        ),
    );
    // All N decided and waiting for the journal (the admin API says so), none answered.
    const metrics = () => fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text());
    for (let i = 0; !(await metrics()).includes(`consult_journal_backlog ${N}\n`); i++) {
      if (i > 300) assert.unreachable(`the ${N} decisions never all waited for the journal:\n${await metrics()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.is(answered.size, 0, 'nothing is answered before it is durable');

    const logged = output().length;
    child.kill('SIGTERM');
    await waitUntil('"shutting down"', () => output().slice(logged).includes('"msg":"shutting down"') || undefined, { timeoutMs: 15_000 });
    const shutting = output()
      .slice(logged)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((r) => r.msg === 'shutting down');
    assert.is(shutting.inFlight, N, 'SIGTERM came while every decision was pending');
    assert.is(answered.size, 0, 'still waiting for the journal');
    assert.is(child.exitCode, null, 'the sidecar waits for them');

    await locker.query('COMMIT'); // the journal can write again
    locked = false;
    const all = await Promise.all(verdicts); // a call cut off by the exit would reject here
    assert.equal(
      all.map((v) => [v.seq, v.action, parseElement(Buffer.from(v.stanza).toString()).attrs.to]),
      Array.from({ length: N }, (_, i) => [String(i), Action.ACTION_REWRITE, `ann@${D}`]),
      'each pending decision answered: relayed to ann',
    );
    assert.is((await exited).code, 0, output());
    const msgs = output()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l).msg);
    assert.not.ok(msgs.includes('shutdown: decisions still pending after drain'), msgs.join(' | '));
    assert.is(msgs.at(-1), 'stopped');
    // What was answered is durable: every visitor's session is in the journal the next owner loads.
    const rows = await locker.query(`SELECT body FROM consult.journal WHERE shop = $1`, [`shop@${D}`]);
    const written = rows.rows.map((r) => r.body as string).join('\n');
    for (let i = 0; i < N; i++) assert.match(written, `v${i}@${D}`);
  } finally {
    if (locked) await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end().catch(() => undefined);
    client?.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await postgres.stop();
  }
});

test('no admin token: the API does not start and the log says why', async () => {
  const config = writeConfig({ shops: [{ jid: `shop@${D}`, name: 'Ops', agents: [] }] });
  const { child, stdout, exited } = spawnSidecarOutput(config, await freePort());
  try {
    await waitUntil('startup', () => stdout().includes('admin API not started') || undefined, { timeoutMs: 15_000 });
    assert.match(stdout(), /set admin\.token/);
    child.kill('SIGTERM');
    assert.is((await exited).code, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('durable store: an admin change survives a restart and the config does not re-seed over it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-pglite-'));
  const adminPort = await freePort();
  const config = writeConfig({
    store: `pglite:${dir}`,
    admin: { port: adminPort, token: TOKEN },
    shops: [{ jid: `shop@${D}`, name: 'Ops', agents: [{ jid: `ann@${D}`, maxSessions: 2 }] }],
  });
  const run = async () => {
    const { child, all, exited } = spawnSidecarOutput(config, await freePort());
    await waitUntil('admin API listening', () => all().includes('admin API listening') || undefined, { timeoutMs: 30_000 }).catch((e) => {
      child.kill('SIGKILL');
      throw new Error(`${e.message}\n${all()}`);
    });
    const api = (method: string, p: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${adminPort}${p}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}` },
        body: body === undefined ? undefined : JSON.stringify(body),
      }).then((r) => r.json());
    return {
      api,
      out: all,
      stop: async () => {
        child.kill('SIGTERM');
        return (await exited).code;
      },
    };
  };
  try {
    const first = await run();
    assert.match(first.out(), /store seeded from config/);
    await first.api('PUT', `/shops/shop@${D}/agents/cat@${D}`, { maxSessions: 4 });
    await first.api('PATCH', `/shops/shop@${D}`, { welcome: 'Changed at runtime' });
    assert.is(await first.stop(), 0);

    const second = await run();
    assert.not.match(second.out(), /store seeded/);
    const shop = await second.api('GET', `/shops/shop@${D}`);
    assert.is(shop.welcome, 'Changed at runtime');
    assert.equal(shop.agents, [
      { jid: `ann@${D}`, maxSessions: 2 },
      { jid: `cat@${D}`, maxSessions: 4 },
    ]);
    assert.is(await second.stop(), 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
