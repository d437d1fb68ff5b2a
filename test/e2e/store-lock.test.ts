// One opener per PGlite directory: a second real sidecar on the directory of a running one is refused at once (exit
// code not 0, a message naming the directory and the holder's PID) and touches nothing, even with the first one's
// gRPC port (a start that would fail on EADDRINUSE). The lock dies with its process: after SIGKILL a restart
// takes the directory at once, and everything the first one acknowledged is there.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { Action, SessionEvent_Kind as Kind, StanzaFilterClient, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { parseElement } from '../../src/xmpp/xml.js';
import { writeConfig } from '../support/sidecar.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'lock.test';
const SHOP = `shop_1@${D}`;
const VISITORS = 20;

interface Proc {
  pid: number;
  lines: string[];
  exited: Promise<number | null>;
  waitForLog(text: string, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function sidecar(config: string, port: number): Proc {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), '--config', config, '--grpc-port', String(port)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  const onData = (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean));
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    pid: child.pid!,
    lines,
    exited,
    async waitForLog(text, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (!lines.some((l) => l.includes(text))) {
        if (Date.now() > until || child.exitCode !== null)
          throw new Error(`no log line with "${text}" (exit ${child.exitCode}); log:\n${lines.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** p, or an error after ms (the timer does not outlive p: the test process must end at once). */
const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
};

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

const consult = (v: number, id: string) =>
  Buffer.from(`<message type='consult' from='v${v}@${D}/web' to='${SHOP}'><body id='${id}'>hi ${id}</body></message>`);
const relayedTo = (v: Verdict) =>
  v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined;
const welcomed = (v: Verdict) => v.extra.some((x) => Buffer.from(x).toString().includes("auto_reply='true'"));
const filter = (c: StanzaFilterClient, v: number, id: string) =>
  new Promise<Verdict>((resolve, reject) =>
    c.filter({ seq: '1', hook: 1, host: D, stanza: consult(v, id), deadlineMs: String(Date.now() + 10_000) }, (e, r) =>
      e ? reject(e) : resolve(r!),
    ),
  );
const online = (c: StanzaFilterClient) =>
  new Promise<void>((resolve, reject) =>
    c.notify({ kind: Kind.PRESENCE_SET, jid: `ann@${D}/pc`, show: '', priority: 0, status: '' }, (e) => (e ? reject(e) : resolve())),
  );

const lock = suite<{ dir: string; procs: Proc[] }>('one sidecar per PGlite directory');
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
  const first = sidecar(config, port);
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
    const second = sidecar(config, p);
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
  const again = sidecar(config, port);
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
