// One opener per PGlite directory: a second real sidecar on the directory of a running one is refused at once (exit
// code not 0, a message naming the directory and the holder's PID) and touches nothing, even with the first one's
// gRPC port (a start that would fail on EADDRINUSE). The lock dies with its process: after SIGKILL a restart
// takes the directory at once, and everything the first one acknowledged is there.
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

const D = 'lock.test';
const SHOP = `shop_1@${D}`;
const VISITORS = 20;
const { filter, online } = grpcCalls({ domain: D, shop: SHOP });

/** Every file under dir with its size and mtime: what "untouched" means. */
function listing(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = fs.statSync(p);
        out[path.relative(dir, p)] = `${s.size}@${s.mtimeMs}`;
      }
    }
  };
  walk(dir);
  return out;
}

const lock = suite<{ dir: string; procs: SidecarChild[] }>('one sidecar per PGlite directory');
lock.before((ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-lock-'));
  ctx.procs = [];
});
lock.after(async (ctx) => {
  for (const p of ctx.procs) await p.kill('SIGKILL');
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

lock('a second sidecar on the directory is refused at once and touches nothing; after SIGKILL a restart has all', async (ctx) => {
  const db = path.join(ctx.dir, 'db');
  const config = writeConfig({
    store: `pglite:${db}`,
    shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `ann@${D}`, maxSessions: 100 }] }],
  });
  const port = await freePort();
  const first = spawnSidecar(config, port);
  ctx.procs.push(first);
  await first.waitForLog('sidecar listening', 60_000);
  let client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await online(client);
  for (let v = 0; v < VISITORS; v++) {
    const verdict = await filter(client, v, `a${v}`);
    assert.is(relayedTo(verdict), `ann@${D}`, `v${v} relayed (acknowledged) by the first sidecar`);
    assert.ok(welcomed(verdict));
  }
  client.close();

  const before = listing(db);
  for (const p of [await freePort(), port]) {
    const second = spawnSidecar(config, p);
    ctx.procs.push(second);
    const code = await within(second.exited, 20_000, 'the second sidecar exits');
    const log = second.lines.join('\n');
    assert.ok(code !== 0 && code !== null, `it exits with an error code (got ${code})`);
    assert.match(log, `the store directory ${db} is already open by another consult sidecar (pid ${first.pid})`);
    assert.not.match(log, 'sidecar listening');
    assert.not.match(log, 'store seeded');
  }
  assert.equal(listing(db), before, 'no file of the directory was written by the refused sidecars');

  await first.kill('SIGKILL'); // its lock dies with it: no stale lock may block the restart
  const again = spawnSidecar(config, port);
  ctx.procs.push(again);
  await again.waitForLog('sidecar listening', 60_000);
  client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    await online(client);
    for (let v = 0; v < VISITORS; v++) {
      const verdict = await filter(client, v, `b${v}`);
      assert.is(relayedTo(verdict), `ann@${D}`, `v${v}'s session survived`);
      assert.not.ok(welcomed(verdict), `v${v} is not welcomed twice`);
    }
  } finally {
    client.close();
  }
  await again.kill('SIGTERM');
  assert.is(await again.exited, 0);
});

lock.run();
