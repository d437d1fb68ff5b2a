// Durable means on the disk: the real sidecar on a PGlite directory, run under strace, syncs the WAL (fdatasync of a
// pg_wal segment) inside every group commit, before the verdict leaves. Each stanza is sent alone and waited for,
// so each one's commit has a window of its own: [sent, answered] must hold a sync of a pg_wal file.
// Needs strace (scripts/test.sh installs it).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { StanzaFilterClient } from '../../src/gen/consult/v1/filter.js';
import { grpcCalls, relayedTo } from '../support/grpc-calls.js';
import { type SidecarChild, spawnSidecar } from '../support/sidecar-process.js';
import { writeConfig } from '../support/sidecar.js';

const D = 'durable.test';
const SHOP = `shop_1@${D}`;
const COMMITS = 30;
const { filter, online } = grpcCalls({ domain: D, shop: SHOP });

interface Sync {
  ms: number; // when the call was entered, ms since the epoch (strace -ttt)
  call: string;
  file: string;
}

/** The fsync/fdatasync calls of a trace written by `strace -f -ttt -y`. */
function syncsIn(trace: string): Sync[] {
  const out: Sync[] = [];
  for (const line of fs.readFileSync(trace, 'utf8').split('\n')) {
    const m = /^\d+\s+(\d+)\.(\d+)\s+(fsync|fdatasync)\(\d+<([^>]*)>/.exec(line);
    if (m) out.push({ ms: Number(m[1]) * 1000 + Math.floor(Number(`0.${m[2]}`) * 1000), call: m[3], file: m[4] });
  }
  return out;
}

const durable = suite<{ dir: string; sidecar?: SidecarChild }>('group commits on PGlite reach the disk');
durable.before((ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-durable-'));
});
durable.after(async (ctx) => {
  await ctx.sidecar?.kill('SIGKILL');
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

durable('every commit syncs its WAL (fdatasync on pg_wal) before its verdict is sent', async (ctx) => {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error('strace is not installed: apt-get install -y strace (scripts/test.sh does)');
  }
  const db = path.join(ctx.dir, 'db');
  const trace = path.join(ctx.dir, 'trace');
  const config = writeConfig({
    store: `pglite:${db}`,
    shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `ann@${D}`, maxSessions: 100 }] }],
  });
  const port = await freePort();
  const args = ['-f', '-qq', '-ttt', '-y', '-e', 'trace=fsync,fdatasync', '-o', trace];
  const sidecar = spawnSidecar(config, port, { under: ['strace', ...args] }); // strace and the sidecar: one process group
  ctx.sidecar = sidecar;
  await sidecar.waitForLog('sidecar listening', 90_000);

  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const windows: [number, number][] = [];
  try {
    await online(client);
    for (let v = 0; v < 3; v++) await filter(client, 1000 + v, `w${v}`); // warm-up
    for (let v = 0; v < COMMITS; v++) {
      const sent = Date.now();
      const verdict = await filter(client, v, `a${v}`);
      windows.push([sent, Date.now()]);
      assert.is(relayedTo(verdict), `ann@${D}`, 'relayed: its open and said changes were committed');
    }
  } finally {
    client.close();
  }
  await sidecar.kill('SIGTERM');

  const wal = syncsIn(trace).filter((s) => s.file.includes(`${db}/pg_wal/`));
  const measured = wal.filter((s) => s.ms >= windows[0][0] && s.ms <= windows[windows.length - 1][1]);
  for (const [i, [sent, answered]] of windows.entries()) {
    const inside = wal.filter((s) => s.ms >= sent && s.ms <= answered);
    assert.ok(inside.length >= 1, `commit ${i}: a pg_wal sync between its stanza (${sent}) and its verdict (${answered})`);
  }
  assert.ok(measured.length >= COMMITS, `${measured.length} pg_wal syncs for ${COMMITS} commits`);
  assert.ok(
    measured.every((s) => s.call === 'fdatasync'),
    'WAL segments are fdatasync-ed',
  );
});

durable.run();
