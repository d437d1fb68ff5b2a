// End to end on an ejabberd cluster: two Debian ejabberd 23.01 nodes joined in one Mnesia
// cluster (test/support/cluster.ts), mod_consult on both, one sidecar that both shims use.
// A visitor on node 1 talks to an agent on node 2; then node 2 crashes (SIGKILL) and comes back.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout, renderEjabberdctlCfg, renderModuleConf } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { newShimCredential } from '../support/ejabberd.js';
import { type SidecarProcess, startSidecar, writeConfig } from '../support/sidecar.js';
import { buildShim } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const RECV = '{"d":"recv","usrType":"usr","cn":"consult"}';

interface Ctx {
  cluster: Cluster;
  sidecar: SidecarProcess;
  clients: TestClient[];
  visitor: TestClient;
  agent: TestClient;
}
const cluster = suite<Ctx>('e2e consult flow across an ejabberd cluster');

const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const isAck = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
const attrsOf = (el: Element) => {
  const { xmlns: _x, msec_times: _t, ...rest } = el.attrs as Record<string, string>;
  return rest;
};
const visitorStanza = (visitor: string, id: string, text: string) =>
  `<message type='consult' to='${SHOP}' realfrom='${visitor}@${D}' realto='test01@${D}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;

/** Connects `username` to cluster node `index` (its own c2s port); stopped in `after`. */
async function connect(ctx: Ctx, index: number, username: string, resource: string): Promise<TestClient> {
  const c = await connectClient({ service: ctx.cluster.nodes[index]!.service, domain: D, username, password: PASSWORD, resource });
  ctx.clients.push(c);
  return c;
}

/** The sidecar's last word after log line `since` on `node`'s shim stream: 'shim hello', 'shim stream closed' or undefined. */
function lastLinkEvent(sidecar: SidecarProcess, node: string, since: number): string | undefined {
  let last: string | undefined;
  for (const line of sidecar.lines.slice(since)) {
    let entry: { msg?: string; node?: string };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry.node === node && (entry.msg === 'shim hello' || entry.msg === 'shim stream closed')) last = entry.msg;
  }
  return last;
}

/**
 * Resolves once `node`'s shim is linked now (its latest event after line `since` is a hello).
 * Not just "a hello was seen": join_cluster restarts ejabberd on the joining node, so its
 * first stream closes and a second one opens a moment later.
 */
async function waitLinked(sidecar: SidecarProcess, node: string, since = 0, timeoutMs = 20_000): Promise<void> {
  await waitUntil(`${node}'s shim linked to the sidecar`, () => lastLinkEvent(sidecar, node, since) === 'shim hello', {
    timeoutMs,
    detail: () => sidecar.lines.slice(-30).join('\n'),
  });
}

// A set-up failure fails every case of the suite (uvu alone would report it as passed).
setUpSuite(cluster, async (ctx) => {
  ctx.clients = [];
  buildShim();
  const credentials = [newShimCredential(), newShimCredential()];
  const configFile = writeConfig({
    grpc: { shims: credentials },
    systemJid: `admin@${D}`,
    shops: [{ jid: SHOP, name: '张滨测试店铺', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
  });
  ctx.sidecar = startSidecar(configFile, await freePort());
  await ctx.sidecar.waitForLog('sidecar listening', 0, 30_000);
  ctx.cluster = await startCluster({
    domain: D,
    nodes: 2,
    credentials,
    // The same one sidecar both ways: node 1 by sidecar_host/sidecar_port, node 2 by the list
    // option `sidecars` (so a rendered YAML list is checked against ejabberd's config validation).
    shimOptions: (i) => ({
      ...(i === 0 ? { sidecar_host: '127.0.0.1', sidecar_port: ctx.sidecar.port } : { sidecars: [`127.0.0.1:${ctx.sidecar.port}`] }),
      timeout: 1000,
      failure_policy: 'reject',
      breaker_cooldown: 500,
    }),
  });
  for (const n of ctx.cluster.nodes) await waitLinked(ctx.sidecar, n.nodeName);
  for (const u of ['visitor1', 'visitor2', 'test01']) await ctx.cluster.register(u, PASSWORD);
});

cluster.after(async (ctx) => {
  await Promise.all((ctx.clients ?? []).map((c) => c.stop().catch(() => undefined)));
  await ctx.cluster?.stop();
  await ctx.sidecar?.kill();
});

cluster('the nodes form one cluster, and an account registered on one exists on the other', async (ctx) => {
  const names = ctx.cluster.nodes.map((n) => n.nodeName).sort();
  assert.equal((await ctx.cluster.runningNodes(0)).sort(), names);
  assert.equal((await ctx.cluster.runningNodes(1)).sort(), names);
  const r = await ctx.cluster.nodes[1]!.ctl('check_account', 'visitor2', D);
  assert.is(r.code, 0, `visitor2 is known on node 2: ${r.stdout}${r.stderr}`);
});

cluster('seed flow across nodes: visitor on node 1, agent on node 2', async (ctx) => {
  // The agent first: its presence reaches the sidecar over node 2's link while the visitor logs in.
  ctx.agent = await connect(ctx, 1, 'test01', 'pc');
  ctx.visitor = await connect(ctx, 0, 'visitor1', 'web-1');
  const { visitor, agent } = ctx;

  await visitor.send(visitorStanza('visitor1', 'X-NODE-1', 'hello from node 1'));
  const ack = await visitor.waitFor(isAck('X-NODE-1'));
  assert.equal(attrsOf(ack), { type: 'mstat', to: `visitor1@${D}` });
  assert.equal(ack.getChild('body')!.attrs.stat, 'sent');
  const welcome = await visitor.waitFor((el) => el.attrs.auto_reply === 'true');
  assert.equal([welcome.attrs.from, welcome.attrs.realfrom, welcome.getChildText('body')], [SHOP, `admin@${D}`, '张滨测试店铺']);

  // Relayed by node 1's router to the agent's session on node 2, rewritten like on one node.
  const relayed = await agent.waitFor(bodyId('X-NODE-1'));
  assert.equal(attrsOf(relayed), {
    from: SHOP,
    to: `test01@${D}`,
    type: 'consult',
    realfrom: `visitor1@${D}`,
    realto: `test01@${D}`,
    channelid: RECV,
    qchatid: '4',
    isHiddenMsg: '0',
  });
  assert.is(relayed.getChildText('body'), 'hello from node 1');

  // The agent's reply goes through node 2's shim and comes back to node 1.
  await agent.send(`<message to="${SHOP}" type="chat"><body id="X-NODE-2" msgType="1">hello from node 2</body></message>`);
  const agentAck = await agent.waitFor(isAck('X-NODE-2'));
  assert.equal(attrsOf(agentAck), { type: 'mstat', to: `test01@${D}` });
  const reply = await visitor.waitFor(bodyId('X-NODE-2'));
  assert.equal(attrsOf(reply), {
    from: SHOP,
    to: `visitor1@${D}`,
    type: 'consult',
    realfrom: `test01@${D}`,
    realto: `visitor1@${D}`,
    channelid: RECV,
    qchatid: '5',
  });
  assert.is(reply.getChildText('body'), 'hello from node 2');
});

cluster('SIGKILL of node 2: node 1 keeps serving its users and sees node 2 gone; a restart rejoins', async (ctx) => {
  const [n1, n2] = ctx.cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
  await ctx.cluster.kill(1);
  assert.is(n2.running(), false);
  await ctx.cluster.waitRunningNodes(0, [n1.nodeName], 20_000);

  // The visitor on node 1 is still served: its message is acked (the agent, who was on node 2, is offline now).
  await ctx.visitor.send(visitorStanza('visitor1', 'WHILE-DOWN', 'anyone there?'));
  const ack = await ctx.visitor.waitFor(isAck('WHILE-DOWN'), 10_000);
  assert.equal(ack.getChild('body')!.attrs.stat, 'sent');
  // A new visitor on node 1 gets the shop's auto reply from the sidecar.
  const visitor2 = await connect(ctx, 0, 'visitor2', 'web-2');
  await visitor2.send(visitorStanza('visitor2', 'V2-1', 'hi'));
  await visitor2.waitFor(isAck('V2-1'), 10_000);
  const auto = await visitor2.waitFor((el) => el.attrs.auto_reply === 'true', 10_000);
  assert.is(auto.attrs.from, SHOP);

  // Back under the same name and directory: both nodes see each other again, its shim is back.
  const since = ctx.sidecar.lines.length;
  await ctx.cluster.restart(1);
  assert.is(n2.running(), true);
  const names = [n1.nodeName, n2.nodeName].sort();
  assert.equal((await ctx.cluster.runningNodes(0)).sort(), names);
  assert.equal((await ctx.cluster.runningNodes(1)).sort(), names);
  await waitLinked(ctx.sidecar, n2.nodeName, since);

  // The agent logs in to node 2 again and gets the visitor's next message from node 1.
  const agent = await connect(ctx, 1, 'test01', 'pc2');
  await ctx.visitor.send(visitorStanza('visitor1', 'AFTER-RESTART', 'back?'));
  await ctx.visitor.waitFor(isAck('AFTER-RESTART'));
  const relayed = await agent.waitFor(bodyId('AFTER-RESTART'), 10_000);
  assert.equal([relayed.attrs.from, relayed.attrs.realfrom, relayed.getChildText('body')], [SHOP, `visitor1@${D}`, 'back?']);
});

cluster.run();

// What the harness renders for a cluster (no ejabberd needed).
const rendering = suite('cluster config rendering');

rendering('a list option renders as a YAML list, scalars as before', () => {
  const yml = renderModuleConf('mod_consult', { sidecars: ['127.0.0.1:50051', '127.0.0.1:50052'], sidecar_port: 50051, debug: false });
  assert.ok(yml.includes('    sidecars: ["127.0.0.1:50051", "127.0.0.1:50052"]\n'), yml);
  assert.ok(yml.includes('    sidecar_port: 50051\n    debug: false\n'), yml);
});

rendering('with epmdPort the node uses that epmd instead of a fixed dist port; without, nothing changes', () => {
  const L = nodeLayout('/tmp/x');
  const clustered = renderEjabberdctlCfg(L, { nodeName: 'a@localhost', distPort: 0, epmdPort: 4444, cookie: 'c00k1e' });
  assert.ok(clustered.includes('export ERL_EPMD_PORT=4444\n'), clustered);
  assert.ok(clustered.includes(' -start_epmd false -setcookie c00k1e"'), clustered);
  assert.not.ok(clustered.includes('ERL_DIST_PORT'), clustered);
  const single = renderEjabberdctlCfg(L, { nodeName: 'a@localhost', distPort: 5555 });
  assert.ok(single.includes('ERL_DIST_PORT=5555\n'), single);
  assert.not.ok(/EPMD|start_epmd|setcookie/.test(single), single);
});

rendering.run();
