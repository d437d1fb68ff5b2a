// PostgreSQL down: a single real sidecar on it cannot renew its shops' leases, and past the lease period it stops
// deciding them (another sidecar may have taken them). What a visitor is told must be true: that the consult service
// cannot reach its database (service-unavailable, wait), not that "another consult sidecar" decides the shop.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { Action, SessionEvent_Kind as Kind, StanzaFilterClient, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { parseElement } from '../../src/xmpp/xml.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { writeConfig } from '../support/sidecar.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'unreachable.test';
const SHOP = `shop_1@${D}`;

const consult = (v: number, id: string) =>
  Buffer.from(`<message type='consult' from='v${v}@${D}/web' to='${SHOP}'><body id='${id}'>hi ${id}</body></message>`);
const relayedTo = (v: Verdict) =>
  v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined;
const filter = (c: StanzaFilterClient, v: number, id: string) =>
  new Promise<Verdict>((resolve, reject) =>
    c.filter({ seq: '1', hook: 1, host: D, stanza: consult(v, id), deadlineMs: String(Date.now() + 5000) }, (e, r) =>
      e ? reject(e) : resolve(r!),
    ),
  );
const online = (c: StanzaFilterClient) =>
  new Promise<void>((resolve, reject) =>
    c.notify({ kind: Kind.PRESENCE_SET, jid: `ann@${D}/pc`, show: '', priority: 0, status: '' }, (e) => (e ? reject(e) : resolve())),
  );

const down = suite<{ pg?: Postgres; child?: ChildProcess }>('the database out of reach');
down.after(async (ctx) => {
  if (ctx.child && ctx.child.exitCode === null && ctx.child.signalCode === null) {
    ctx.child.kill('SIGKILL');
    await new Promise((r) => ctx.child!.once('exit', r));
  }
  await ctx.pg?.stop();
});

down('PostgreSQL down past the lease period: visitors are told the service cannot reach its database', async (ctx) => {
  ctx.pg = await startPostgres();
  const config = writeConfig({
    store: ctx.pg.url,
    sidecarId: 'alone',
    shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `ann@${D}`, maxSessions: 10 }] }],
  });
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), '--config', config, '--grpc-port', String(port)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  ctx.child = child;
  const lines: string[] = [];
  const onData = (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean));
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const waitForLog = async (text: string, ms: number) => {
    const until = Date.now() + ms;
    while (!lines.some((l) => l.includes(text))) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`no log line with "${text}"; log:\n${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await waitForLog('deciding shops', 60_000);
  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    await online(client);
    assert.is(relayedTo(await filter(client, 1, 'a1')), `ann@${D}`, 'decided while the database answers');

    await ctx.pg.stop(); // gone: every connection refused
    ctx.pg = undefined;
    await waitForLog('leases not renewed within their period', 20_000);
    const refused = await filter(client, 2, 'a2');
    assert.is(refused.action, Action.ACTION_REJECT);
    assert.equal([refused.error?.condition, refused.error?.type], ['service-unavailable', 'wait']);
    assert.match(refused.error!.text, 'the consult service cannot reach its database');
    assert.not.match(refused.error!.text, 'another consult sidecar');
    const again = await filter(client, 1, 'a3'); // a visitor with a session: the same
    assert.match(again.error?.text ?? '', 'cannot reach its database');
  } finally {
    client.close();
  }
});

down.run();
