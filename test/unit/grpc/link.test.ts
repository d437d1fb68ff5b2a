// The link to the shims over real gRPC streams, as two ejabberd nodes of a cluster open them:
// what the sidecar sends on its own goes to a live node, is sent again on the other node when
// a stream dies before acknowledging it, and avoids a node the cluster reported down; that
// node's presence goes with it.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { SessionEvent_Kind as Kind, StanzaFilterClient, type SidecarMessage } from '../../../src/gen/consult/v1/filter.js';
import { startGrpcServer, stanzaFilterHandlers } from '../../../src/grpc/server.js';
import { silent } from '../../../src/domain/log.js';
import { Backends, deskWorld } from '../../support/desk.js';

const D = 'link.test';
const SHOP = `shop@${D}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function setUp() {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [{ jid: `ann@${D}`, maxSessions: 5 }] }] });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const link = w.link; // the one the desk asks for presence reports
  const { server, port } = await startGrpcServer(stanzaFilterHandlers({ desk: w.desk, link, watch: w.watch, log: silent }), '127.0.0.1', 0);
  const clients: StanzaFilterClient[] = [];
  /** A shim of ejabberd node `node`: records Injects, acknowledges them when `acking`. */
  function shim(node: string, cluster: string[]) {
    const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = client.filterStream();
    const injects: string[][] = [];
    const erasures: string[] = [];
    const s = { node, client, call, injects, erasures, acking: true, watch: undefined as SidecarMessage['watch'] };
    call.on('data', (m: SidecarMessage) => {
      if (m.watch) s.watch = m.watch;
      if (m.eraseUser) {
        erasures.push(m.eraseUser.jid);
        const { id, jid, account } = m.eraseUser;
        if (s.acking)
          call.write({
            eraseUserAck: { id, offline: true, mam: true, account, error: jid.startsWith('bad') ? 'no' : '', node },
          });
        return;
      }
      if (!m.inject) return;
      injects.push(m.inject.stanzas.map((b) => Buffer.from(b).toString()));
      if (s.acking) call.write({ injectAck: { id: m.inject.id } });
    });
    call.on('error', () => undefined);
    call.write({ hello: { node, hosts: [D], shimVersion: 't', clusterNodes: cluster, features: [] } });
    clients.push(client);
    return s;
  }
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; !ok(); i++) {
      if (i > 500) throw new Error(`timed out waiting for ${what}`);
      await sleep(10);
    }
  };
  const stop = () => {
    for (const c of clients) c.close();
    server.forceShutdown();
  };
  return { w, link, shim, until, stop };
}

test('the watch list says which shops this sidecar owns', async () => {
  const { shim, until, stop } = await setUp();
  try {
    const a = shim('n1@host', ['n1@host']);
    await until('the watch list', () => a.watch !== undefined);
    assert.equal(a.watch!.owned, [SHOP]);
    assert.equal(a.watch!.shops, [SHOP]);
  } finally {
    stop();
  }
});

test('an Inject not acknowledged when its stream dies is sent again on the other node', async () => {
  const { link, shim, until, stop } = await setUp();
  try {
    const a = shim('n1@host', ['n1@host', 'n2@host']);
    const b = shim('n2@host', ['n1@host', 'n2@host']);
    await until('both linked', () => link.connected === 2);
    a.acking = false;
    b.acking = false;
    const delivered = link.deliver(['<message to="x@link.test"/>']);
    await until('the first try', () => a.injects.length + b.injects.length === 1);
    const [first, other] = a.injects.length ? [a, b] : [b, a];
    other.acking = true;
    first.call.cancel(); // the node dies with the Inject unacknowledged
    await delivered;
    assert.equal(other.injects, [['<message to="x@link.test"/>']], 'sent again on the other node, and acknowledged there');
  } finally {
    stop();
  }
});

test('a node the cluster reports down gets no Injects while another can take them; its presence goes with its streams', async () => {
  const { w, link, shim, until, stop } = await setUp();
  try {
    const a = shim('n1@host', ['n1@host', 'n2@host']);
    const b = shim('n2@host', ['n1@host', 'n2@host']);
    await until('both linked', () => link.connected === 2);
    a.call.write({ event: { kind: Kind.PRESENCE_SET, jid: `ann@${D}/pc`, show: '', priority: 0, status: '' } });
    await until('ann online', () => w.presence.state(`ann@${D}`).online);
    // n2 saw n1 leave the cluster, but n1's stream is still open here (a partition between the two): n1 still speaks
    // for its own sessions, so ann stays; Injects avoid n1.
    b.call.write({ cluster: { node: 'n1@host', up: false } });
    for (let i = 0; i < 6; i++) await link.deliver([`<message id="m${i}" to="x@link.test"/>`]);
    assert.is(a.injects.length, 0, 'nothing to the node reported down');
    assert.is(b.injects.length, 6);
    assert.ok(w.presence.state(`ann@${D}`).online, "n1's stream is open: its presence is kept");
    // Back in the cluster: it takes its share again, and is asked to report its agents again.
    const asked: string[] = [];
    a.call.on('data', (m: SidecarMessage) => m.reportPresence && asked.push('n1'));
    b.call.on('data', (m: SidecarMessage) => m.reportPresence && asked.push('n2'));
    b.call.write({ cluster: { node: 'n1@host', up: true } });
    await until('n1 asked to report again', () => asked.length > 0);
    assert.equal(asked, ['n1'], 'only the node that came back is asked');
    for (let i = 0; i < 6; i++) await link.deliver([`<message id="n${i}" to="x@link.test"/>`]);
    assert.ok(a.injects.length > 0, 'round robin over both again');
    assert.equal([a.injects.length, b.injects.length], [3, 6 + 3], 'every other Inject to each');
    // Reported down again, then its stream closes (a crash): its presence goes at once, no grace period.
    b.call.write({ cluster: { node: 'n1@host', up: false } });
    b.call.write({ event: { kind: Kind.PRESENCE_SET, jid: `bob@${D}/pc`, show: '', priority: 0, status: '' } });
    await link.deliver(['<message id="sync" to="x@link.test"/>']); // the cluster event before it has been read
    a.call.cancel();
    await until('ann offline', () => !w.presence.state(`ann@${D}`).online);
  } finally {
    stop();
  }
});

test('the shims reach this sidecar once every node of their cluster not reported gone has a stream here', async () => {
  const { link, shim, until, stop } = await setUp();
  try {
    assert.not.ok(link.reachedByAll(), 'no stream yet');
    const a = shim('n1@host', ['n1@host', 'n2@host']);
    await until('n1 linked', () => link.awaitedNodes().length > 0);
    assert.equal(link.awaitedNodes(), ['n2@host'], 'n1 names n2 as in its cluster');
    assert.not.ok(link.reachedByAll());
    link.nodeState('n2@host', false);
    assert.ok(link.reachedByAll(), 'a node reported gone is not waited for');
    link.nodeState('n2@host', true);
    assert.not.ok(link.reachedByAll(), 'back in the cluster: waited for again');
    shim('n2@host', ['n2@host', 'n1@host']);
    await until('n2 linked', () => link.reachedByAll());
    a.call.end();
    await until('n1 gone', () => !link.reachedByAll());
    assert.equal(link.awaitedNodes(), ['n1@host']);
  } finally {
    stop();
  }
});

test('an erasure goes to one shim and resolves with its answer; a stream that dies first sends it to the other node', async () => {
  const { link, shim, until, stop } = await setUp();
  try {
    await link.eraseUser(`v@${D}`, false).then(
      () => assert.unreachable('no shim linked'),
      (e) => assert.match((e as Error).message, 'no ejabberd shim is linked'),
    );
    const first = shim('n1@host', ['n1@host', 'n2@host']);
    const second = shim('n2@host', ['n1@host', 'n2@host']);
    await until('both linked', () => link.connected === 2);
    first.acking = false;
    second.acking = false;
    const erased = link.eraseUser(`v@${D}`, true);
    await until('the erasure sent', () => first.erasures.length + second.erasures.length === 1);
    const [asked, other] = first.erasures.length ? [first, second] : [second, first];
    other.acking = true;
    asked.call.cancel(); // its node dies before answering
    assert.equal(await erased, { node: other.node, offline: true, mam: true, account: true });
    assert.equal(other.erasures, [`v@${D}`]);
    await link.eraseUser(`bad@${D}`, false).then(
      () => assert.unreachable('ejabberd failed'),
      (e) => assert.match((e as Error).message, `could not erase bad@${D}: no`),
    );
  } finally {
    stop();
  }
});

test.run();
