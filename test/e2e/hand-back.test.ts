// End to end: shops come back to the sidecar they belong to only when the shims can reach it.
// Two clustered ejabberd nodes whose shims know three sidecars on one PostgreSQL; a visitor on
// the first node writes every 50 ms throughout to an agent on the second. The shop belongs to A (among A and B) and to C once C runs:
// - A restarted under the same id (SIGTERM, then SIGKILL): B serves meanwhile, and A takes the
//   shop back once the shim is connected to it;
// - C joins: the shop moves to C once the shim is connected to it.
// Through each, every message is acknowledged or bounced (never both, never neither), each
// acknowledged one reaches the agent once, and only a few are bounced. The figures (bounces, the
// time from the first bounce to the last) are printed: docs/scale-out.md quotes them.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { preferredOwner } from '../../src/cluster/leases.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { newShimCredential } from '../support/ejabberd.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { type SidecarProcess, startSidecar, writeConfig } from '../support/sidecar.js';
import { buildShim } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const EVERY_MS = 50;

interface Ctx {
  pg: Postgres;
  cluster: Cluster;
  ids: [string, string, string];
  configs: string[];
  ports: number[];
  sidecars: (SidecarProcess | undefined)[];
  visitor: TestClient;
  agent: TestClient;
  sent: number;
}
const handBack = suite<Ctx>('hand-back: a shop returns to its sidecar once the shims reach it');

/** Ids such that A is the shop's sidecar among A and B, and C among all three. */
function sidecarIds(): [string, string, string] {
  for (let i = 0; ; i++) {
    const ids: [string, string, string] = [`a-${i}`, `b-${i}`, `c-${i}`];
    if (preferredOwner(SHOP, ids.slice(0, 2)) === ids[0] && preferredOwner(SHOP, ids) === ids[2]) return ids;
  }
}

const bodyId = (el: Element) => el.getChild('body')?.attrs.id as string | undefined;

function start(ctx: Ctx, i: number): SidecarProcess {
  const s = startSidecar(ctx.configs[i]!, ctx.ports[i]!);
  ctx.sidecars[i] = s;
  return s;
}

/** The visitor writes every EVERY_MS while `during` runs, and a second after; what became of each message. */
async function traffic(ctx: Ctx, during: () => Promise<void>) {
  const first = ctx.sent + 1;
  let writing = true;
  const sentAt = new Map<string, number>();
  const writer = (async () => {
    while (writing) {
      const id = `m${++ctx.sent}`;
      sentAt.set(id, Date.now());
      await ctx.visitor.send(`<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${id}</body></message>`);
      await new Promise((r) => setTimeout(r, EVERY_MS));
    }
  })();
  try {
    await during();
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    writing = false;
    await writer;
  }
  const ids = [...sentAt.keys()];
  const answered = (id: string) =>
    ctx.visitor.received.some((el) => bodyId(el) === id && (el.attrs.type === 'mstat' || el.attrs.type === 'error'));
  await waitUntil('every message answered (acknowledged or bounced)', () => ids.every(answered), { timeoutMs: 30_000 });
  await ctx.agent.settle();
  const acks = (id: string) => ctx.visitor.received.filter((el) => el.attrs.type === 'mstat' && bodyId(el) === id).length;
  const bounced = ids.filter((id) => ctx.visitor.received.some((el) => el.attrs.type === 'error' && bodyId(el) === id));
  const relayed = (id: string) => ctx.agent.received.filter((el) => el.is('message') && bodyId(el) === id).length;
  for (const id of ids) {
    const n = acks(id);
    const b = bounced.includes(id);
    assert.ok((n === 1) !== b, `${id}: acknowledged ${n} times, ${b ? '' : 'not '}bounced`);
    if (n === 1) assert.is(relayed(id), 1, `${id} acknowledged: it reaches the agent once`);
    else assert.is(relayed(id), 0, `${id} bounced: the agent never gets it`);
  }
  const times = bounced.map((id) => sentAt.get(id)!);
  const windowMs = times.length > 0 ? Math.max(...times) - Math.min(...times) + EVERY_MS : 0;
  return { sent: ids.length, bounced: bounced.length, windowMs, first };
}

setUpSuite(handBack, async (ctx) => {
  ctx.sidecars = [];
  ctx.sent = 0;
  buildShim();
  ctx.pg = await startPostgres();
  const credentials = [newShimCredential(), newShimCredential()];
  ctx.ports = [await freePort(), await freePort(), await freePort()];
  ctx.ids = sidecarIds();
  ctx.configs = ctx.ids.map((id) =>
    writeConfig({
      sidecarId: id,
      store: ctx.pg.url,
      grpc: { shims: credentials },
      systemJid: `admin@${D}`,
      timers: { tickSec: 1 },
      shops: [{ jid: SHOP, name: 'Hand-back shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
    }),
  );
  for (const i of [0, 1]) await start(ctx, i).waitForLog('sidecar listening', 0, 30_000);
  ctx.cluster = await startCluster({
    domain: D,
    nodes: 2,
    credentials,
    shimOptions: { sidecars: ctx.ports.map((p) => `127.0.0.1:${p}`), timeout: 1000, failure_policy: 'reject', breaker_cooldown: 500 },
  });
  for (const u of ['visitor1', 'test01']) await ctx.cluster.register(u, PASSWORD);
  const [first, second] = ctx.cluster.nodes.map((n) => n!.service);
  ctx.agent = await connectClient({ service: second!, domain: D, username: 'test01', password: PASSWORD, resource: 'desk' });
  ctx.visitor = await connectClient({ service: first!, domain: D, username: 'visitor1', password: PASSWORD, resource: 'web' });
  await ctx.sidecars[0]!.waitForLog('every ejabberd node is connected', 0, 30_000);
  // The session opens (welcome) before the faults: from then on every message is relayed to the agent.
  await waitUntil(
    'the shop answers through the shim',
    async () => {
      const id = `p${++ctx.sent}`;
      await ctx.visitor.send(`<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>hello</body></message>`);
      const answer = await ctx.visitor.waitFor(
        (el) => bodyId(el) === id && (el.attrs.type === 'mstat' || el.attrs.type === 'error'),
        10_000,
      );
      return answer.attrs.type === 'mstat';
    },
    { timeoutMs: 60_000, everyMs: 250 },
  );
});

handBack.after(async (ctx) => {
  await ctx.visitor?.stop().catch(() => {});
  await ctx.agent?.stop().catch(() => {});
  await ctx.cluster?.stop();
  for (const s of ctx.sidecars) await s?.kill('SIGKILL');
  await ctx.pg?.stop();
});

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  handBack(
    `restarted under the same id after ${signal}: the standby serves meanwhile, the shop comes back once the shim reaches it`,
    async (ctx) => {
      let back: SidecarProcess | undefined;
      const r = await traffic(ctx, async () => {
        await new Promise((r) => setTimeout(r, 500));
        const standby = ctx.sidecars[1]!;
        const since = standby.lines.length; // before the stop: a clean stop hands over before the process is gone
        await ctx.sidecars[0]!.kill(signal);
        await standby.waitForLog('took the lease of a shop', since, 20_000);
        back = start(ctx, 0);
        await back.waitForLog('took the lease of a shop', 0, 30_000);
      });
      const reached = back!.lines.findIndex((l) => l.includes('every ejabberd node is connected'));
      const took = back!.lines.findIndex((l) => l.includes('took the lease of a shop'));
      assert.ok(reached >= 0 && reached < took, 'taken back only after the shim reached it');
      console.log(`hand-back after ${signal}: ${r.sent} sent, ${r.bounced} bounced over ${r.windowMs} ms`);
      // SIGTERM: two short hand-overs (A to B, B back to A). SIGKILL: B takes the shop once A's lease has run out.
      assert.ok(r.bounced <= (signal === 'SIGTERM' ? 12 : 150), `${r.bounced} bounced`);
    },
  );
}

handBack('a sidecar joins: the shop moves to it once the shim reaches it', async (ctx) => {
  let joined: SidecarProcess | undefined;
  const r = await traffic(ctx, async () => {
    await new Promise((r) => setTimeout(r, 500));
    joined = start(ctx, 2);
    await joined.waitForLog('took the lease of a shop', 0, 30_000);
  });
  const reached = joined!.lines.findIndex((l) => l.includes('every ejabberd node is connected'));
  const took = joined!.lines.findIndex((l) => l.includes('took the lease of a shop'));
  assert.ok(reached >= 0 && reached < took, 'taken only after the shim reached it');
  console.log(`join: ${r.sent} sent, ${r.bounced} bounced over ${r.windowMs} ms`);
  assert.ok(r.bounced <= 6, `${r.bounced} bounced`);
});

handBack.run();
