// Presence liveness: what a node reported lives as long as the node is connected, or comes back
// within the grace period; a node the cluster reports gone takes its presence with it at once,
// or, while its stream is open here, when that stream closes. A node removes only what it reported.
// The grace timers run on a hand-moved clock: every state is checked just before and just after.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../../../src/storage/memory-store.js';
import { Presence } from '../../../src/desk/presence.js';
import { HandTimers } from '../../support/hand-timers.js';

const GRACE = 30_000;
const res = (agent: string, node: string, resource = 'pc') => ({ agent, resource, node, show: '', priority: 0 });

async function world(store = new MemoryStore()) {
  const gone: string[] = [];
  const timers = new HandTimers();
  const p = new Presence(store, { nodeGraceMs: GRACE, timers, onNodeGone: (node) => gone.push(node) });
  await p.load();
  return { p, store, gone, timers };
}

const storedAgents = async (store: MemoryStore) => (await store.resources()).map((r) => r.agent).sort();

test('a node whose stream closed and did not come back: its agents go offline when the grace period ends', async () => {
  const { p, store, gone, timers } = await world();
  await p.streamOpened('n1');
  await p.streamOpened('n2');
  await p.set(res('ann@x', 'n1'));
  await p.set(res('bob@x', 'n2'));
  p.streamClosed('n1');
  await timers.advance(GRACE - 1);
  assert.ok(p.state('ann@x').online, 'still online during the grace period');
  assert.equal(gone, []);
  assert.equal(await storedAgents(store), ['ann@x', 'bob@x'], 'still in the store during the grace period');
  await timers.advance(1);
  assert.equal(gone, ['n1']);
  assert.not.ok(p.state('ann@x').online);
  assert.ok(p.state('bob@x').online, "another node's agents stay");
  assert.equal(await storedAgents(store), ['bob@x'], 'gone from the store too');
  assert.is(timers.pending, 0);
  p.close();
});

test('a node that comes back within the grace period keeps its place; two streams of one node count as one', async () => {
  const { p, gone, timers } = await world();
  await p.streamOpened('n1');
  await p.streamOpened('n1'); // e.g. a second stream during a reconnect
  await p.set(res('ann@x', 'n1'));
  p.streamClosed('n1');
  assert.is(timers.pending, 0, 'one stream of n1 is still open: no grace period starts');
  await timers.advance(GRACE * 2);
  assert.ok(p.state('ann@x').online, 'one stream of n1 is still open');
  p.streamClosed('n1');
  assert.is(timers.pending, 1, 'the last stream closed: the grace period starts');
  await timers.advance(GRACE - 1);
  assert.ok(p.state('ann@x').online, 'within the grace period');
  await p.streamOpened('n1'); // back: it reports its presence again
  assert.is(timers.pending, 0, 'the grace period ends with the new stream');
  assert.not.ok(p.state('ann@x').online, 'what it reported before is void until it reports again');
  await p.set(res('ann@x', 'n1'));
  await timers.advance(GRACE * 2);
  assert.equal(gone, [], 'never dropped');
  assert.ok(p.state('ann@x').online);
  p.close();
});

test('a node reported down by the cluster goes at once; presence from the store waits a grace period for its node', async () => {
  const store = new MemoryStore();
  await store.setResource(res('ann@x', 'n1'));
  await store.setResource(res('bob@x', 'n2'));
  await store.setResource(res('cat@x', 'n3'));
  const { p, gone, timers } = await world(store);
  assert.ok(p.state('ann@x').online && p.state('bob@x').online && p.state('cat@x').online, 'loaded as they were');
  assert.is(timers.pending, 3, 'each node that reported them gets its grace period to connect');
  await p.streamOpened('n1'); // n1 reconnects: it reports again (here: ann)
  await p.set(res('ann@x', 'n1'));
  await p.nodeDown('n2'); // n1 saw n2 leave the cluster
  assert.equal(gone, ['n2']);
  assert.not.ok(p.state('bob@x').online);
  assert.is(timers.pending, 1, "only n3's grace period is left");
  await timers.advance(GRACE - 1);
  assert.ok(p.state('cat@x').online, 'n3 has not connected yet, but its grace period is not over');
  assert.equal(gone, ['n2']);
  await timers.advance(1); // n3 never connected: its presence goes when the grace period ends
  assert.equal(gone, ['n2', 'n3']);
  assert.ok(p.state('ann@x').online);
  assert.not.ok(p.state('cat@x').online);
  assert.equal(await storedAgents(store), ['ann@x']);
  p.close();
});

test("a node's hello names the cluster: presence of nodes outside it and not connected goes at once", async () => {
  const store = new MemoryStore();
  await store.setResource(res('ann@x', 'old-name@host'));
  await store.setResource(res('bob@x', 'n2'));
  const { p, gone, timers } = await world(store);
  await p.streamOpened('n1');
  await p.clusterIs(['n1', 'n2']);
  assert.equal(gone, ['old-name@host']);
  assert.not.ok(p.state('ann@x').online);
  assert.ok(p.state('bob@x').online, 'n2 is in the cluster: it gets its grace period to connect');
  await timers.advance(GRACE - 1);
  assert.ok(p.state('bob@x').online);
  await timers.advance(1);
  assert.equal(gone, ['old-name@host', 'n2'], 'n2 did not connect within it');
  assert.not.ok(p.state('bob@x').online);
  p.close();
});

test('close() stops every grace timer: nothing is dropped afterwards', async () => {
  const store = new MemoryStore();
  await store.setResource(res('ann@x', 'n1'));
  const { p, gone, timers } = await world(store);
  assert.is(timers.pending, 1);
  p.close();
  assert.is(timers.pending, 0);
  await timers.advance(GRACE * 2);
  assert.equal(gone, []);
  assert.ok(p.state('ann@x').online);
});

test("a resource that reconnected on another node: the old node's late close removes only what the old node reported", async () => {
  const { p, store } = await world();
  await p.streamOpened('n1');
  await p.streamOpened('n2');
  await p.set(res('ann@x', 'n1'));
  await p.set(res('ann@x', 'n2')); // ann's pc reconnected on n2 before n1 told it closed
  await p.remove('ann@x', 'pc', 'n1'); // n1's close, late
  assert.equal(
    p.resourcesOf('ann@x').map((r) => r.node),
    ['n2'],
  );
  assert.equal(
    (await store.resources()).map((r) => [r.agent, r.node]),
    [['ann@x', 'n2']],
    'the store keeps the one n2 holds',
  );
  await p.remove('ann@x', 'pc', 'n1'); // again: nothing of n1's is left to remove
  assert.ok(p.state('ann@x').online);
  // The other order: n1's close first, then n2's presence.
  await p.set(res('bob@x', 'n1'));
  await p.remove('bob@x', 'pc', 'n1');
  await p.set(res('bob@x', 'n2'));
  assert.equal(
    p.resourcesOf('bob@x').map((r) => r.node),
    ['n2'],
  );
  // n2's own close removes it.
  await p.remove('ann@x', 'pc', 'n2');
  assert.not.ok(p.state('ann@x').online);
  assert.equal(await storedAgents(store), ['bob@x']);
  p.close();
});

test('a node reported down while its stream is open here keeps its presence; when its stream closes it goes at once', async () => {
  const { p, gone, timers } = await world();
  await p.streamOpened('n1');
  await p.streamOpened('n2');
  await p.set(res('ann@x', 'n1'));
  await p.set(res('bob@x', 'n2'));
  await p.nodeDown('n1'); // n2 lost sight of n1 (a netsplit), but n1 still talks to us
  assert.ok(p.state('ann@x').online, 'n1 still speaks for its own sessions');
  assert.equal(gone, []);
  p.streamClosed('n1'); // then n1's stream goes too (a crash)
  await timers.advance(0);
  assert.equal(gone, ['n1'], 'no grace period for a node the cluster reported gone');
  assert.is(timers.pending, 0);
  assert.not.ok(p.state('ann@x').online);
  assert.ok(p.state('bob@x').online);
  p.close();
});

test('a node reported back in the cluster is no longer taken for gone: its stream closing gets the grace period', async () => {
  const { p, gone, timers } = await world();
  await p.streamOpened('n1');
  await p.set(res('ann@x', 'n1'));
  await p.nodeDown('n1');
  p.nodeUp('n1'); // the split healed
  p.streamClosed('n1');
  assert.is(timers.pending, 1, 'the grace period starts');
  assert.ok(p.state('ann@x').online);
  await timers.advance(GRACE);
  assert.equal(gone, ['n1']);
  // A node that says hello again is alive: the report of it gone no longer counts.
  await p.streamOpened('n2');
  await p.nodeDown('n2');
  await p.streamOpened('n2'); // a second stream's hello
  await p.set(res('bob@x', 'n2'));
  p.streamClosed('n2');
  p.streamClosed('n2');
  assert.is(timers.pending, 1, 'its last stream closing gets the grace period');
  assert.ok(p.state('bob@x').online);
  p.close();
});

test.run();
