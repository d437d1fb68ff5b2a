// End to end: where an agent's presence is filed, on two clustered ejabberd nodes (test/support/cluster.ts)
// whose shims both connect to two sidecars on one PostgreSQL. Each shim reports only the sessions of its own
// node, so an agent connected to node B is B's in both sidecars:
// - across a restart of node A and a restart of either sidecar;
// - when B is SIGKILLed, the agent goes with it at once (not after nodeGraceSec), its visitor is requeued and
//   told, and a new visitor waits instead of going to the dead agent;
// - across a netsplit between A and B that heals at once: the agent stays assignable without reconnecting.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { newShimCredential } from '../support/ejabberd.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { type SidecarProcess, startSidecar, writeConfig } from '../support/sidecar.js';
import { buildShim } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { bodyId, connectClient, type Element, isAck, isBounce, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const AGENT = `test01@${D}`;
const PASSWORD = 'secret';
const ADMIN_TOKEN = 'cluster-presence-admin-token';
/** Long, so that an agent dropped at once is told apart from one dropped when the grace period ends. */
const NODE_GRACE_SEC = 60;

interface Ctx {
  pg: Postgres;
  cluster: Cluster;
  configs: string[];
  grpcPorts: number[];
  adminPorts: number[];
  sidecars: SidecarProcess[];
  clients: TestClient[];
  agent: TestClient; // test01, on node B
  visitor1: TestClient; // on node A
}
const presence = suite<Ctx>('cluster presence: each agent filed under the node that holds its session');

const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const nodeA = (ctx: Ctx) => ctx.cluster.nodes[0]!.nodeName;
const nodeB = (ctx: Ctx) => ctx.cluster.nodes[1]!.nodeName;

async function connect(ctx: Ctx, node: number, user: string, resource: string): Promise<TestClient> {
  const c = await connectClient({ service: ctx.cluster.nodes[node]!.service, domain: D, username: user, password: PASSWORD, resource });
  ctx.clients.push(c);
  return c;
}

async function admin(ctx: Ctx, i: number, p: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPorts[i]}${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, body: await res.json().catch(() => undefined) };
}

/** The agent's resources as sidecar `i` holds them: `resource@node`, sorted. */
async function resourcesAt(ctx: Ctx, i: number): Promise<string[]> {
  const { status, body } = await admin(ctx, i, `/agents/${AGENT}`);
  if (status !== 200) throw new Error(`sidecar ${i}: /agents/${AGENT} answered ${status}`);
  return (body as { resources: { resource: string; node: string }[] }).resources.map((r) => `${r.resource}@${r.node}`).sort();
}

/** The shop's sessions (visitor → agent) from whichever sidecar decides it (the other answers 421). */
async function sessions(ctx: Ctx): Promise<Record<string, string>> {
  for (const i of [0, 1]) {
    const { status, body } = await admin(ctx, i, `/sessions?shop=${SHOP}`);
    if (status === 200) return Object.fromEntries((body as { visitor: string; agent: string }[]).map((s) => [s.visitor, s.agent]));
  }
  throw new Error('no sidecar decides the shop');
}

/** Whether sidecar `s` logged, after line `since`, a JSON line with `msg` whose fields include `fields`. */
function logged(s: SidecarProcess, since: number, msg: string, fields: Record<string, string> = {}): boolean {
  return s.lines.slice(since).some((line) => {
    try {
      const e = JSON.parse(line) as Record<string, unknown>;
      return e.msg === msg && Object.entries(fields).every(([k, v]) => e[k] === v);
    } catch {
      return false;
    }
  });
}

/** Both shims linked to sidecar `i` (a hello from each node since line `since`). */
async function bothLinked(ctx: Ctx, i: number, since: number): Promise<void> {
  const s = ctx.sidecars[i]!;
  await waitUntil(
    `both nodes' shims linked to sidecar ${i}`,
    () => logged(s, since, 'shim hello', { node: nodeA(ctx) }) && logged(s, since, 'shim hello', { node: nodeB(ctx) }),
    { timeoutMs: 30_000, detail: () => s.lines.slice(-30).join('\n') },
  );
}

async function startSidecarAt(ctx: Ctx, i: number): Promise<void> {
  const s = startSidecar(ctx.configs[i]!, ctx.grpcPorts[i]!);
  ctx.sidecars[i] = s;
  await s.waitForLog('sidecar listening', 0, 30_000);
}

/** Runs `calls` (Erlang expressions over the bound names A and B, the nodes) from a hidden node of the cluster. */
async function erlang(ctx: Ctx, calls: string): Promise<string> {
  const cfg = fs.readFileSync(nodeLayout(ctx.cluster.nodes[0]!.dir).ctlConfigPath, 'utf8');
  const cookie = /-setcookie (\w+)/.exec(cfg)?.[1];
  if (!cookie) throw new Error('no cookie in ejabberdctl.cfg');
  const probe = `probe_${crypto.randomBytes(4).toString('hex')}@localhost`;
  const script = `A = '${nodeA(ctx)}', B = '${nodeB(ctx)}', R = begin ${calls} end, io:format("~p", [R]), halt().`;
  const { stdout } = await promisify(execFile)(
    'erl',
    ['-noshell', '-hidden', '-sname', probe, '-setcookie', cookie, '-start_epmd', 'false', '-eval', script],
    { env: { ...process.env, ERL_EPMD_PORT: String(ctx.cluster.epmdPort) }, timeout: 30_000 },
  );
  return stdout.trim();
}

// A set-up failure fails every case of the suite (uvu alone would report it as passed).
setUpSuite(presence, async (ctx) => {
  ctx.clients = [];
  ctx.sidecars = [];
  buildShim();
  ctx.pg = await startPostgres();
  const credentials = [newShimCredential(), newShimCredential()];
  ctx.grpcPorts = [await freePort(), await freePort()];
  ctx.adminPorts = [await freePort(), await freePort()];
  ctx.configs = [0, 1].map((i) =>
    writeConfig({
      sidecarId: `presence-${i}`,
      store: ctx.pg.url,
      grpc: { shims: credentials },
      admin: { port: ctx.adminPorts[i], token: ADMIN_TOKEN },
      systemJid: `admin@${D}`,
      timers: { tickSec: 1, offlineGraceSec: 1, nodeGraceSec: NODE_GRACE_SEC },
      shops: [{ jid: SHOP, name: 'Presence shop', language: 'en', agents: [{ jid: AGENT, maxSessions: 10 }] }],
    }),
  );
  for (const i of [0, 1]) await startSidecarAt(ctx, i);
  ctx.cluster = await startCluster({
    domain: D,
    nodes: 2,
    credentials,
    shimOptions: { sidecars: ctx.grpcPorts.map((p) => `127.0.0.1:${p}`), timeout: 1000, failure_policy: 'reject', breaker_cooldown: 500 },
  });
  for (const u of ['visitor1', 'visitor2', 'visitor3', 'probe1', 'probe2', 'test01']) await ctx.cluster.register(u, PASSWORD);
  for (const i of [0, 1]) await bothLinked(ctx, i, 0);
});

presence.after(async (ctx) => {
  await Promise.all(ctx.clients.map((c) => c.stop().catch(() => undefined)));
  await ctx.cluster?.stop();
  for (const s of ctx.sidecars) await s?.kill('SIGKILL');
  await ctx.pg?.stop();
});

presence('an agent on node B stays filed under B across a restart of node A and a restart of either sidecar', async (ctx) => {
  ctx.agent = await connect(ctx, 1, 'test01', 'pc');
  const onB = [`pc@${nodeB(ctx)}`];
  for (const i of [0, 1]) await waitUntil(`test01 under B at sidecar ${i}`, async () => (await resourcesAt(ctx, i)).join() === onB.join());

  // While A restarts (its streams close, B reports it gone and back, its shim reports again), every look at both
  // sidecars finds test01 under B and nowhere else.
  const seen = new Set<string>();
  let watching = true;
  const watch = (async () => {
    while (watching) {
      for (const i of [0, 1]) seen.add(JSON.stringify(await resourcesAt(ctx, i)));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const since = ctx.sidecars.map((s) => s.lines.length);
  try {
    await ctx.cluster.restart(0);
    for (const i of [0, 1]) {
      await waitUntil(`A's shim back at sidecar ${i}`, () => logged(ctx.sidecars[i]!, since[i]!, 'shim hello', { node: nodeA(ctx) }), {
        timeoutMs: 30_000,
      });
    }
    // Its report (nothing of test01's) has had time to arrive once a stanza through A has been answered.
    const probe = await connect(ctx, 0, 'probe1', 'web');
    await probe.send(consult('PROBE-A', 'hi'));
    await probe.waitFor((el) => isAck('PROBE-A')(el) || isBounce('PROBE-A')(el), 15_000);
    await probe.stop();
  } finally {
    watching = false;
    await watch;
  }
  assert.equal([...seen], [JSON.stringify(onB)], 'never missing, never under A');

  // Each sidecar in turn: stopped, started again (it loads presence from the database, then each shim reports
  // what its own node holds).
  for (const i of [0, 1]) {
    await ctx.sidecars[i]!.kill('SIGTERM');
    await startSidecarAt(ctx, i);
    await bothLinked(ctx, i, 0);
    await waitUntil(`test01 under B at the restarted sidecar ${i}`, async () => (await resourcesAt(ctx, i)).join() === onB.join());
    assert.equal(await resourcesAt(ctx, 1 - i), onB, `the other sidecar (${1 - i}) still has test01 under B`);
  }
  // Nothing more came later (a late report of A's, a store row under A).
  const probe = await connect(ctx, 0, 'probe2', 'web');
  await probe.send(consult('PROBE-B', 'hi'));
  await probe.waitFor((el) => isAck('PROBE-B')(el) || isBounce('PROBE-B')(el), 15_000);
  await probe.stop();
  for (const i of [0, 1]) assert.equal(await resourcesAt(ctx, i), onB, `sidecar ${i}`);
});

presence('B SIGKILLed: its agent goes at once, its visitor is requeued and told, a new visitor is not given to it', async (ctx) => {
  const visitor1 = (ctx.visitor1 = await connect(ctx, 0, 'visitor1', 'web'));
  await waitUntil('the shop decided by a sidecar both shims know', async () => {
    const id = `V1-${crypto.randomBytes(3).toString('hex')}`;
    await visitor1.send(consult(id, 'hello'));
    return (await visitor1.waitFor((el) => isAck(id)(el) || isBounce(id)(el), 15_000)).attrs.type === 'mstat';
  });
  await ctx.agent.waitFor((el) => el.attrs.realfrom === `visitor1@${D}`, 10_000);
  assert.equal((await sessions(ctx))[`visitor1@${D}`], AGENT);

  const since = ctx.sidecars.map((s) => s.lines.length);
  const seenBefore = visitor1.received.length;
  await ctx.cluster.kill(1);
  for (const i of [0, 1]) {
    await waitUntil(`test01 gone at sidecar ${i}`, async () => (await resourcesAt(ctx, i)).length === 0, {
      timeoutMs: NODE_GRACE_SEC * 1000,
    });
    // Dropped because A reported B gone (and its streams closed), not because a grace period ended. (The log
    // line may come a moment after the admin API's answer.)
    const s = ctx.sidecars[i]!;
    await waitUntil(
      `sidecar ${i} dropped B's presence on the cluster's word`,
      () =>
        s.lines.slice(since[i]).some((l) => l.includes("dropped a node's presence") && l.includes('"why":"reported down by the cluster')),
      { detail: () => s.lines.slice(since[i]).join('\n') },
    );
  }
  // The visitor's agent is offline: after offlineGraceSec it goes back to the queue (nobody else is online), and is told.
  const requeued = await visitor1.waitFor(
    (el) =>
      visitor1.received.indexOf(el) >= seenBefore &&
      el.attrs.auto_reply === 'true' &&
      /back in the queue/.test(el.getChildText('body') ?? ''),
    15_000,
  );
  assert.is(requeued.attrs.from, SHOP);
  assert.equal(await sessions(ctx), {}, 'no session left with the dead agent');

  // A new visitor waits in the queue (told that nobody is online): it is not given to the dead agent.
  const visitor2 = await connect(ctx, 0, 'visitor2', 'web');
  await visitor2.send(consult('V2-1', 'anyone?'));
  await visitor2.waitFor(isAck('V2-1'), 10_000);
  const queued = await visitor2.waitFor(
    (el) => el.attrs.auto_reply === 'true' && /No agent is available/.test(el.getChildText('body') ?? ''),
    10_000,
  );
  assert.is(queued.attrs.from, SHOP);
  assert.equal(await sessions(ctx), {}, 'nobody assigned');

  // B comes back and the agent logs in again: the waiting visitors are given to it.
  const sinceBack = ctx.sidecars.map((s) => s.lines.length);
  await ctx.cluster.restart(1);
  for (const i of [0, 1]) {
    await waitUntil(`B's shim back at sidecar ${i}`, () => logged(ctx.sidecars[i]!, sinceBack[i]!, 'shim hello', { node: nodeB(ctx) }), {
      timeoutMs: 30_000,
    });
  }
  ctx.agent = await connect(ctx, 1, 'test01', 'pc');
  await waitUntil('both visitors given to test01', async () => {
    const s = await sessions(ctx);
    return s[`visitor1@${D}`] === AGENT && s[`visitor2@${D}`] === AGENT;
  });
});

presence('a netsplit between A and B that heals at once: the agent on B stays assignable without reconnecting', async (ctx) => {
  const onB = [`pc@${nodeB(ctx)}`];
  for (const i of [0, 1]) await waitUntil(`test01 under B at sidecar ${i}`, async () => (await resourcesAt(ctx, i)).join() === onB.join());
  const since = ctx.sidecars.map((s) => s.lines.length);
  const seenBefore = ctx.visitor1.received.length;
  // Connected before the split: right after one, ejabberd's Mnesia can refuse new streams (host-unknown) for a while.
  const visitor3 = await connect(ctx, 1, 'visitor3', 'web');

  // A and B lose each other and find each other again at once: each shim reports the other down, then up.
  assert.is(
    await erlang(ctx, 'D = rpc:call(A, erlang, disconnect_node, [B]), C = rpc:call(A, net_kernel, connect_node, [B]), {D, C}'),
    '{true,true}',
  );
  for (const i of [0, 1]) {
    const s = ctx.sidecars[i]!;
    await waitUntil(
      `sidecar ${i} heard B back and asked it to report again`,
      () =>
        logged(s, since[i]!, 'ejabberd node left the cluster', { node: nodeB(ctx) }) &&
        logged(s, since[i]!, 'asked an ejabberd node to report its agents again', { node: nodeB(ctx) }),
      { detail: () => s.lines.slice(since[i]).join('\n') },
    );
    await waitUntil(`test01 under B at sidecar ${i} after the heal`, async () => (await resourcesAt(ctx, i)).join() === onB.join());
  }

  // A new visitor is given to the agent on B, which gets its message (a visitor on B: after a split, ejabberd's
  // session table on A no longer lists B's sessions, so A could not route to the agent).
  // ejabberd itself may take a while after the split to route its own node's users again (Mnesia): the visitor
  // sends again until its message is acknowledged, as a client would after an error or a silence.
  let tries = 0;
  const acked = await waitUntil(
    'visitor3 acknowledged after the split',
    async () => {
      const id = `V3-${++tries}`;
      await visitor3.send(consult(id, 'after the split'));
      const answer = await visitor3.waitFor((el) => isAck(id)(el) || isBounce(id)(el), 5_000).catch(() => undefined);
      return answer?.attrs.type === 'mstat' ? id : undefined;
    },
    { timeoutMs: 60_000, everyMs: 100 },
  );
  const relayed = await ctx.agent.waitFor(bodyId(acked), 10_000);
  assert.is(relayed.attrs.realfrom, `visitor3@${D}`);
  assert.is((await sessions(ctx))[`visitor3@${D}`], AGENT);
  // The visitors it had kept it: nobody was requeued.
  assert.is((await sessions(ctx))[`visitor1@${D}`], AGENT);
  assert.not.ok(
    ctx.visitor1.received.slice(seenBefore).some((el) => /back in the queue/.test(el.getChildText('body') ?? '')),
    'visitor1 was not requeued',
  );
});

presence.run();
