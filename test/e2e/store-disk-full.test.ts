// A full disk under the embedded store: the real sidecar on a PGlite directory in a small tmpfs. Once the disk is
// filled up to less than a WAL segment, writes go on (admin updates of one shop, rewriting one row: the tables do
// not grow, the WAL does) until the WAL needs a new segment: PostgreSQL PANICs, and the sidecar must log "disk full
// under <dir>" and exit with an error code (it used to stay alive at 100 % CPU, answering nothing). A start on the
// full disk is refused with the same words; once space is freed a start reopens the store, and everything
// acknowledged (the sessions, the last shop update answered) is there. Needs root (mount); unmounted at the end.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { StanzaFilterClient } from '../../src/gen/consult/v1/filter.js';
import { grpcCalls, relayedTo, welcomed } from '../support/grpc-calls.js';
import { type SidecarChild, spawnSidecar } from '../support/sidecar-process.js';
import { writeConfig } from '../support/sidecar.js';
import { within } from '../support/wait.js';

const D = 'diskfull.test';
const SHOP = `shop_1@${D}`;
const TOKEN = 'disk-full-test-token-0123456789';
const VISITORS = 20;
const HEADROOM = 8 * 1024 * 1024; // left free: room for the tables, not for a 16 MiB WAL segment
const { filter, online } = grpcCalls({ domain: D, shop: SHOP });
const sidecar = (config: string, port: number) => spawnSidecar(config, port, { logTimeoutMs: 60_000 });

const free = (dir: string) => {
  const s = fs.statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
};
const SEGMENT = 16 * 1024 * 1024;
const PAGE = 8192;

/**
 * Bytes left in the WAL segment being written: the newest segment whose pages carry their own address (a recycled
 * one carries an older one), its written pages counted from the start (the rest is still zero-filled).
 */
function walLeft(db: string): number {
  const dir = path.join(db, 'pg_wal');
  for (const name of fs
    .readdirSync(dir)
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort()
    .reverse()) {
    const start = BigInt(`0x${name.slice(8, 16)}`) * 0x100000000n + BigInt(`0x${name.slice(16)}`) * BigInt(SEGMENT);
    const buf = fs.readFileSync(path.join(dir, name));
    let pages = 0;
    while (pages * PAGE < buf.length && buf.readBigUInt64LE(pages * PAGE + 8) === start + BigInt(pages * PAGE)) pages++;
    if (pages > 0) return SEGMENT - pages * PAGE;
  }
  throw new Error(`no WAL segment being written in ${dir}`);
}

const full = suite<{ mount: string; mounted: boolean; procs: SidecarChild[]; configDir?: string }>('a full disk under the embedded store');
full.before((ctx) => {
  ctx.mount = fs.mkdtempSync(path.join(os.tmpdir(), 'store-disk-'));
  ctx.procs = [];
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128m', 'tmpfs', ctx.mount]);
  ctx.mounted = true;
});
full.after(async (ctx) => {
  for (const p of ctx.procs) await p.kill('SIGKILL');
  if (ctx.mounted) execFileSync('umount', [ctx.mount]);
  fs.rmSync(ctx.mount, { recursive: true, force: true });
});

full(
  'the WAL finds no room: the sidecar says disk full and exits; a start on the full disk refuses; freed, nothing acked is lost',
  async (ctx) => {
    const db = path.join(ctx.mount, 'db');
    const filler = path.join(ctx.mount, 'filler');
    const adminPort = await freePort();
    const config = writeConfig({
      store: `pglite:${db}`,
      admin: { port: adminPort, token: TOKEN },
      shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `ann@${D}`, maxSessions: 100 }] }],
    });
    const port = await freePort();
    const api = (method: string, p: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${adminPort}${p}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

    const first = sidecar(config, port);
    ctx.procs.push(first);
    await first.waitForLog('admin API listening');
    const metrics = await (await api('GET', '/metrics')).text();
    const gauge = /^consult_store_free_bytes (\d+)/m.exec(metrics);
    assert.ok(gauge && Math.abs(Number(gauge[1]) - free(db)) < 16 * 1024 * 1024, 'the free space is on /metrics');
    let client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    await online(client);
    for (let v = 0; v < VISITORS; v++) assert.is(relayedTo(await filter(client, v, `a${v}`)), `ann@${D}`, `v${v} relayed`);
    client.close();

    // Shop updates, four at a time at first: each one writes ~1.5 KB of WAL (and as much of table: PGlite prunes nothing).
    const welcomes: string[] = [];
    let lastAcked = -1;
    let running = true;
    const ended = first.exited.then((code) => {
      running = false;
      return code;
    });
    const writer = async (until: () => boolean) => {
      while (running && !until()) {
        const i = welcomes.length;
        welcomes.push(`w${i} ${randomBytes(1100).toString('base64')}`); // ~1.5 KB that does not compress: kept in the row
        const res = await api('PATCH', `/shops/${SHOP}`, { welcome: welcomes[i] }).catch(() => undefined);
        if (res?.status === 200) lastAcked = Math.max(lastAcked, i);
        await res?.arrayBuffer();
      }
    };
    const writers = (until: () => boolean) => Promise.all([1, 2, 3, 4].map(() => writer(until)));
    // Up to 1 MiB before the end of the WAL segment, then the disk is filled but for HEADROOM: the tables' next MiB
    // fits, the next 16 MiB WAL segment does not.
    let checked = 0;
    let nearEnd = false;
    const nearSegmentEnd = () => {
      if (!nearEnd && welcomes.length - checked >= 20) {
        checked = welcomes.length; // a look at the WAL every 20 updates
        nearEnd = walLeft(db) < 1024 * 1024;
      }
      return nearEnd;
    };
    await within(writers(nearSegmentEnd), 120_000, 'the WAL reaches the end of its segment');
    assert.ok(running, `still running; log:\n${first.lines.join('\n').slice(-3000)}`);
    fs.writeFileSync(filler, Buffer.alloc(free(ctx.mount) - HEADROOM));
    // One update at a time now, so that the order they were answered in is the order they were written in.
    const code = await within(
      Promise.all([ended, writer(() => false)]).then(([c]) => c),
      120_000,
      'the sidecar exits once the WAL finds no room',
    ).finally(() => {
      running = false;
    });
    const log = first.lines.join('\n');
    if (process.env.STORE_TEST_LOG) fs.writeFileSync(process.env.STORE_TEST_LOG, log);
    assert.ok(code !== 0 && code !== null, `it exits with an error code (got ${code}); log:\n${log.slice(-3000)}`);
    const said = first.lines.find((l) => l.includes(`disk full under ${db}`));
    assert.ok(said, `the log says "disk full under ${db}":\n${log.slice(-3000)}`);
    assert.match(said!, 'pg_wal/', 'when the WAL needed a new segment');
    assert.match(said!, 'exits so that its supervisor restarts it');
    assert.ok(lastAcked >= 0, 'shop updates were acknowledged before the disk was full');

    // A start on the full disk is refused at once, with the same words.
    const refused = sidecar(config, port);
    ctx.procs.push(refused);
    const refusedCode = await within(refused.exited, 30_000, 'a start on the full disk ends');
    assert.ok(refusedCode !== 0 && refusedCode !== null, `refused (exit ${refusedCode})`);
    assert.match(refused.lines.join('\n'), new RegExp(`disk full under ${db}: [\\d.]+ MiB free, the embedded store needs at least`));

    fs.rmSync(filler);
    const again = sidecar(config, port);
    ctx.procs.push(again);
    await again.waitForLog('admin API listening');
    const shop = (await (await api('GET', `/shops/${SHOP}`)).json()) as { welcome: string };
    const stored = welcomes.indexOf(shop.welcome);
    assert.ok(stored >= lastAcked, `the last acknowledged update (${lastAcked}) or a later one is stored (found ${stored})`);
    client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      await online(client);
      for (let v = 0; v < VISITORS; v++) {
        const verdict = await filter(client, v, `b${v}`);
        assert.is(relayedTo(verdict), `ann@${D}`, `v${v}'s session survived`);
        assert.not.ok(welcomed(verdict));
      }
    } finally {
      client.close();
    }
    await again.kill('SIGTERM');
    assert.is(await again.exited, 0);
  },
);

full.run();
