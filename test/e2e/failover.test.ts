// End to end: two clustered ejabberd nodes (test/support/cluster.ts), each shim connected to
// two sidecars on one PostgreSQL. Each shop is decided by one sidecar; the shims send its
// stanzas there. Then the failures one owner per shop must survive:
// - the owning sidecar is SIGKILLed under traffic: the other takes the shop over; every message
//   the visitor saw acknowledged reaches the agent, the rest are bounced with an error (none
//   silently lost), the visitor keeps its one agent and is not welcomed twice;
// - an ejabberd node is SIGKILLed: its agents go offline (the surviving node reports it), their
//   sessions move to an agent still online, and new visitors are not given to them.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { preferredOwner } from '../../src/cluster/leases.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { logText, newShimCredential, waitForLogLine } from '../support/ejabberd.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { type SidecarProcess, startSidecar, writeConfig } from '../support/sidecar.js';
import { buildShim } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const ADMIN_TOKEN = 'failover-admin-token';

interface Ctx {
  pg: Postgres;
  cluster: Cluster;
  sidecars: SidecarProcess[];
  /** sidecarId of each sidecar: the first is SHOP's preferred owner. */
  ids: [string, string];
  grpcPorts: number[];
  adminPorts: number[];
  clients: TestClient[];
  visitor: TestClient; // visitor1, on node 1
  agent1: TestClient; // test01, on node 2
  agent2: TestClient; // test02, on node 1
}
const failover = suite<Ctx>('failover: owner sidecar and ejabberd node crashes');

const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const isAck = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
const isBounce = (id: string) => (el: Element) => el.attrs.type === 'error' && bodyId(id)(el);
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function connect(ctx: Ctx, node: number, user: string, resource = 'r'): Promise<TestClient> {
  const c = await connectClient({ service: ctx.cluster.nodes[node]!.service, domain: D, username: user, password: PASSWORD, resource });
  ctx.clients.push(c);
  return c;
}

/** Sidecar ids such that the first is the preferred owner of SHOP. */
function sidecarIds(): [string, string] {
  for (let i = 0; ; i++) {
    const pair: [string, string] = [`east-${i}`, `west-${i}`];
    if (preferredOwner(SHOP, pair) === pair[0]) return pair;
  }
}

async function admin(ctx: Ctx, i: number, p: string): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPorts[i]}${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  if (!res.ok) throw new Error(`sidecar ${i}: ${p} ${res.status} ${await res.text()}`);
  return res.json();
}

const sessions = (ctx: Ctx, i: number) => admin(ctx, i, `/sessions?shop=${SHOP}`) as Promise<{ visitor: string; agent: string }[]>;

/** Whether sidecar `i` knows `agent` online with `resource` (its presence came over both shims' streams). */
async function knowsOnline(ctx: Ctx, i: number, agent: string, resource: string): Promise<boolean> {
  const view = (await admin(ctx, i, `/agents/${agent}`)) as { resources: { resource: string }[] };
  return view.resources.some((r) => r.resource === resource);
}

// A set-up failure fails every case of the suite (uvu alone would report it as passed).
setUpSuite(failover, async (ctx) => {
  ctx.clients = [];
  ctx.sidecars = [];
  buildShim();
  ctx.pg = await startPostgres();
  const credentials = [newShimCredential(), newShimCredential()];
  ctx.grpcPorts = [await freePort(), await freePort()];
  ctx.adminPorts = [await freePort(), await freePort()];
  ctx.ids = sidecarIds();
  for (const i of [0, 1]) {
    const config = writeConfig({
      sidecarId: ctx.ids[i],
      store: ctx.pg.url,
      grpc: { shims: credentials },
      admin: { port: ctx.adminPorts[i], token: ADMIN_TOKEN },
      systemJid: `admin@${D}`,
      // agentReminderSec: an agent gets a reminder from a tick one second after an unanswered visitor message,
      // which is how the second case sees ticks run.
      timers: { tickSec: 1, offlineGraceSec: 1, nodeGraceSec: 3, agentReminderSec: 1 },
      shops: [
        {
          jid: SHOP,
          name: 'Failover shop',
          strategy: 'least-busy',
          agents: [
            { jid: `test01@${D}`, maxSessions: 1 },
            { jid: `test02@${D}`, maxSessions: 1 },
          ],
        },
      ],
    });
    ctx.sidecars.push(startSidecar(config, ctx.grpcPorts[i]!));
    await ctx.sidecars[i]!.waitForLog('sidecar listening', 0, 30_000);
  }
  ctx.cluster = await startCluster({
    domain: D,
    nodes: 2,
    credentials,
    shimOptions: {
      sidecars: ctx.grpcPorts.map((p) => `127.0.0.1:${p}`),
      timeout: 1000,
      failure_policy: 'reject',
      breaker_cooldown: 500,
    },
  });
  for (const u of ['visitor1', 'visitor2', 'test01', 'test02']) await ctx.cluster.register(u, PASSWORD);
  // Both shims linked to both sidecars, with the owner known: an agent's /sessions (which opens no session) is
  // answered by the shop's owner, and bounced while none is known. Then the probe goes away.
  const probe = await connect(ctx, 0, 'test02', 'probe');
  let n = 0;
  await waitUntil(
    'the shop reachable through the shim (a /sessions acknowledged)',
    async () => {
      const id = `P-${++n}`;
      await probe.send(`<message to='${SHOP}' type='chat'><body id='${id}'>/sessions</body></message>`);
      const answer = await probe.waitFor((el) => isAck(id)(el) || isBounce(id)(el), 10_000);
      return answer.attrs.type === 'mstat';
    },
    { timeoutMs: 60_000, everyMs: 250 },
  );
  await probe.stop();
  ctx.clients.splice(ctx.clients.indexOf(probe), 1);
});

failover.after(async (ctx) => {
  await Promise.all(ctx.clients.map((c) => c.stop().catch(() => undefined)));
  await ctx.cluster?.stop();
  for (const s of ctx.sidecars) await s.kill('SIGKILL');
  await ctx.pg?.stop();
});

failover('the owning sidecar dies under traffic: the other takes over; nothing acknowledged is lost, no second agent', async (ctx) => {
  const [owner, standby] = ctx.sidecars as [SidecarProcess, SidecarProcess];
  await owner.waitForLog('took the lease of a shop'); // the preferred sidecar owns the shop
  const agent1 = (ctx.agent1 = await connect(ctx, 1, 'test01')); // on node 2
  const visitor = (ctx.visitor = await connect(ctx, 0, 'visitor1', 'web'));
  await waitUntil(
    'test01 online at both sidecars',
    async () => (await knowsOnline(ctx, 0, `test01@${D}`, 'r')) && knowsOnline(ctx, 1, `test01@${D}`, 'r'),
  );

  // Traffic before the kill, across it and after the takeover, one message at a time: each is sent once the
  // previous one is answered (acknowledged or bounced).
  const answers = new Map<string, Element>();
  const ids: string[] = [];
  const exchange = async (i: number, { answered = true } = {}) => {
    const id = `F-${i}`;
    ids.push(id);
    await visitor.send(consult(id, `message ${i}`));
    const answer = visitor.waitFor((e) => isAck(id)(e) || isBounce(id)(e), 15_000).then((el) => answers.set(id, el));
    if (answered) await answer;
    return answer;
  };
  for (let i = 0; i < 10; i++) {
    if (i === 1) ctx.agent2 = await connect(ctx, 0, 'test02'); // free, on node 1: the session must not move to it
    await exchange(i);
  }
  const node1 = ctx.cluster.nodes[0]!;
  const logFrom = logText(node1).length;
  const since = standby.lines.length;
  const inFlight = await exchange(10, { answered: false }); // on its way when the owner dies
  await owner.kill('SIGKILL');
  await inFlight;
  // No owner now: these are bounced (or, had the shim not yet seen the stream go, time out and are bounced).
  for (let i = 11; i < 14; i++) await exchange(i);
  // The standby takes the lease once it expires, and tells the shims: from then on node 1's shim sends it SHOP's stanzas.
  await standby.waitForLog('took the lease of a shop', since, 30_000);
  await waitForLogLine(
    node1,
    logFrom,
    new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.grpcPorts[1]} \\(${esc(ctx.ids[1])}\\) decides 1 shops now \\(\\+1: ${esc(SHOP)}`),
    30_000,
  );
  for (let i = 14; i < 24; i++) await exchange(i);

  // Each message was acknowledged or bounced, once: any second answer was routed before a later message's, so it is in by the settle.
  await visitor.settle();
  const answersOf = (id: string) => visitor.received.filter((e) => isAck(id)(e) || isBounce(id)(e));
  assert.equal(
    ids.filter((id) => answersOf(id).length !== 1),
    [],
    'every message answered exactly once',
  );
  const outcome = (id: string) => (answers.get(id)!.attrs.type === 'mstat' ? 'acked' : 'bounced');
  const summary = ids.map((id) => `${id}:${outcome(id)}`).join(' ');
  assert.equal(
    ids.slice(0, 10).filter((id) => outcome(id) !== 'acked'),
    [],
    `served before the kill: ${summary}`,
  );
  assert.equal(
    ids.slice(14).filter((id) => outcome(id) !== 'acked'),
    [],
    `served once the new owner is known: ${summary}`,
  );
  const bounced = ids.filter((id) => outcome(id) === 'bounced');
  assert.ok(bounced.includes('F-11'), `sent while no sidecar owned the shop: bounced (${summary})`);
  for (const id of bounced) {
    const err = answers.get(id)!.getChild('error')!;
    assert.ok(err.getChild('service-unavailable') && err.attrs.type === 'wait', `${id} bounced with service-unavailable (wait): ${err}`);
  }
  // Every acknowledged message reaches the visitor's one agent, test01 (the only one online when it came).
  const acked = ids.filter((id) => outcome(id) === 'acked');
  for (const id of acked) await agent1.waitFor(bodyId(id), 10_000);
  await ctx.agent2.settle(); // anything for test02 was routed before the last message reached test01
  assert.equal(
    ids.filter((id) => ctx.agent2.received.some(bodyId(id))),
    [],
    'the other agent got none of them',
  );
  assert.is(visitor.received.filter((e) => e.attrs.auto_reply === 'true').length, 1, 'welcomed once');
  assert.equal(
    (await sessions(ctx, 1)).filter((s) => s.visitor === `visitor1@${D}`).map((s) => s.agent),
    [`test01@${D}`],
    'the new owner has the session, with the same agent',
  );
  // The agent's reply goes through the new owner.
  await agent1.send(`<message to="${SHOP}" type="chat"><body id="F-REPLY" msgType="1">still here</body></message>`);
  await visitor.waitFor(bodyId('F-REPLY'), 10_000);
});

failover('an ejabberd node dies: its agents go offline, their sessions move, new visitors are not given to them', async (ctx) => {
  const sidecar = ctx.sidecars[1]!; // the owner since the previous case
  assert.equal(
    (await sessions(ctx, 1)).map((s) => [s.visitor, s.agent]),
    [[`visitor1@${D}`, `test01@${D}`]],
  );
  const since = sidecar.lines.length;
  await ctx.cluster.kill(1); // node 2, where test01 is connected
  await sidecar.waitForLog('left the cluster', since, 20_000);
  await sidecar.waitForLog("dropped a node's presence", since, 20_000);
  // test01's session moves to test02 after offlineGraceSec, with the visitor's history.
  const moved = await ctx.agent2.waitFor(
    (el) => el.attrs.realfrom === `visitor1@${D}` && /^message \d+$/.test(el.getChildText('body') ?? ''),
    15_000,
  );
  assert.is(moved.attrs.from, SHOP);
  assert.equal(
    (await sessions(ctx, 1)).map((s) => [s.visitor, s.agent]),
    [[`visitor1@${D}`, `test02@${D}`]],
    'no session left with the offline agent',
  );
  // A new visitor: test02 is full (maxSessions 1), test01 is offline: it waits in the queue, given to nobody.
  const visitor2 = await connect(ctx, 0, 'visitor2', 'web');
  await visitor2.send(consult('Q-1', 'anyone?'));
  await visitor2.waitFor(isAck('Q-1'), 10_000);
  const told = await visitor2.waitFor((el) => el.attrs.auto_reply === 'true', 10_000); // the queue notice, from the new owner
  assert.is(told.attrs.from, SHOP);
  // Two ticks after that, each of which serves the queue right after its reminders (src/routing/timers.ts): a
  // wrong assignment would show now. A tick is seen by the reminder test02 gets for a message of visitor1's it
  // has not answered, sent after visitor2 joined the queue.
  for (const n of [1, 2]) {
    await ctx.visitor.send(consult(`T-${n}`, `still waiting ${n}`));
    await ctx.agent2.waitFor(bodyId(`T-${n}`), 10_000);
    const after = ctx.agent2.received.length;
    await ctx.agent2.waitFor(
      (el) =>
        ctx.agent2.received.indexOf(el) >= after &&
        el.attrs.realfrom === `visitor1@${D}` &&
        el.getChild('body')?.attrs.msgType === '15' &&
        (el.getChildText('body') ?? '').includes(`visitor1@${D}`),
      15_000,
    );
  }
  assert.not.ok(
    (await sessions(ctx, 1)).some((s) => s.visitor === `visitor2@${D}`),
    'not assigned to the offline agent (nor to the full one)',
  );
});

failover.run();
