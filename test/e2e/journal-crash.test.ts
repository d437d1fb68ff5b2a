// SIGKILL during group commit: the real sidecar process on a durable store takes a burst of
// first messages on one FilterStream and is killed as soon as the first verdict arrives, while later batches are being written. After a
// restart on the same store, everything that was acknowledged is there: every relayed
// visitor keeps its agent (no second welcome), every kept message still waits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import {
  Action,
  SessionEvent_Kind as Kind,
  StanzaFilterClient,
  type SidecarMessage,
  type Verdict,
} from '../../src/gen/consult/v1/filter.js';
import { parseElement } from '../../src/xmpp/xml.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { startSidecar, writeConfig } from '../support/sidecar.js';
import { setUpSuite } from '../support/suite.js';

const D = 'crash.test';
const SHOP = `shop_1@${D}`;
const TOKEN = 'crash-test-admin-token';
const VISITORS = 600;

const crash = suite<{ pg: Postgres; dirs: string[] }>('SIGKILL during group commit');
setUpSuite(crash, async (ctx) => {
  ctx.pg = await startPostgres();
  ctx.dirs = [];
});
crash.after(async (ctx) => {
  await ctx.pg?.stop();
  for (const d of ctx.dirs ?? []) fs.rmSync(d, { recursive: true, force: true });
});

const online = (c: StanzaFilterClient, agent: string) =>
  new Promise<void>((resolve, reject) =>
    c.notify({ kind: Kind.PRESENCE_SET, jid: `${agent}@${D}/pc`, show: '', priority: 0, status: '' }, (e) => (e ? reject(e) : resolve())),
  );
const consult = (v: number, id: string) =>
  Buffer.from(`<message type='consult' from='v${v}@${D}/web' to='${SHOP}'><body id='${id}'>hi ${id}</body></message>`);
const relayedTo = (v: Verdict) =>
  v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined;
const welcomed = (v: Verdict) => v.extra.some((x) => Buffer.from(x).toString().includes("auto_reply='true'"));

for (const kind of ['postgres', 'pglite'] as const) {
  crash(`${kind}: nothing acknowledged is lost`, async (ctx) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-'));
    ctx.dirs.push(dir);
    const store = kind === 'postgres' ? ctx.pg.url : `pglite:${dir}/db`;
    if (kind === 'postgres') {
      const pg = await import('pg');
      const db = new pg.default.Client({ connectionString: ctx.pg.url });
      await db.connect();
      await db.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
      await db.end();
    }
    const adminPort = await freePort();
    const config = writeConfig({
      store,
      admin: { port: adminPort, token: TOKEN },
      limits: { queueMax: 1000 },
      shops: [
        {
          jid: SHOP,
          name: 'Shop',
          agents: [
            { jid: `ann@${D}`, maxSessions: 60 },
            { jid: `bob@${D}`, maxSessions: 60 },
          ],
        },
      ],
    });
    const port = await freePort();
    let sidecar = startSidecar(config, port);
    await sidecar.waitForLog('sidecar listening', 0, 30_000);
    let client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    await online(client, 'ann');
    await online(client, 'bob');

    // The burst: every visitor's first message, pipelined on one stream; kill once a third has been answered.
    const acked = new Map<number, Verdict>();
    const stream = client.filterStream();
    stream.on('error', () => undefined);
    const killed = new Promise<void>((resolve) => {
      stream.on('data', (m: SidecarMessage) => {
        if (!m.verdict) return;
        acked.set(Number(m.verdict.seq), m.verdict);
        if (acked.size === 1) void sidecar.kill('SIGKILL').then(resolve); // while later batches are being written
      });
    });
    for (let v = 0; v < VISITORS; v++) {
      stream.write({ filter: { seq: String(v), hook: 1, host: D, stanza: consult(v, `a${v}`), deadlineMs: String(Date.now() + 30_000) } });
    }
    await killed;
    client.close();
    const relayed = [...acked].filter(([, v]) => relayedTo(v));
    const kept = [...acked].filter(([, v]) => v.action === Action.ACTION_DROP);
    assert.ok(acked.size < VISITORS, `killed mid-burst (${acked.size} of ${VISITORS} answered)`);
    assert.ok(relayed.length > 0, 'some were relayed before the kill');

    sidecar = startSidecar(config, port);
    await sidecar.waitForLog('admin API listening', 0, 30_000);
    client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const api = async (p: string) =>
        (await fetch(`http://127.0.0.1:${adminPort}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
      const sessions = new Map(
        ((await api(`/sessions?shop=${SHOP}`)) as { visitor: string; agent: string }[]).map((s) => [s.visitor, s.agent]),
      );
      for (const [v, verdict] of relayed)
        assert.is(sessions.get(`v${v}@${D}`), relayedTo(verdict), `v${v}'s session survived with its agent`);
      const queue = new Map(((await api(`/queue?shop=${SHOP}`)) as { visitor: string; kept: number }[]).map((q) => [q.visitor, q.kept]));
      for (const [v] of kept) assert.is(queue.get(`v${v}@${D}`), 1, `v${v}'s kept message survived`);
      assert.ok(sessions.size <= 120, 'capacity held across the crash');

      await online(client, 'ann');
      await online(client, 'bob');
      for (const [v, verdict] of relayed.slice(0, 20)) {
        const again = await new Promise<Verdict>((resolve, reject) =>
          client.filter({ seq: '1', hook: 1, host: D, stanza: consult(v, `b${v}`), deadlineMs: String(Date.now() + 5000) }, (e, r) =>
            e ? reject(e) : resolve(r!),
          ),
        );
        assert.is(relayedTo(again), relayedTo(verdict));
        assert.not.ok(welcomed(again), 'no second welcome');
      }
    } finally {
      client.close();
      await sidecar.kill();
    }
  });
}

crash.run();
