// Presence liveness: what a node reported lives as long as the node is connected, or comes back
// within the grace period; a node the cluster reports gone takes its presence with it at once.
// The grace timers run on a hand-moved clock: every state is checked just before and just after.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../../../src/storage/memory-store.js';
import { Presence, type Timers } from '../../../src/desk/presence.js';

const GRACE = 30_000;
const res = (agent: string, node: string, resource = 'pc') => ({ agent, resource, node, show: '', priority: 0 });

/** Timers that fire only when the test moves time. */
class HandTimers implements Timers {
  private now = 0;
  private due: { at: number; fn: () => void }[] = [];

  after(ms: number, fn: () => void): () => void {
    const t = { at: this.now + ms, fn };
    this.due.push(t);
    return () => {
      this.due = this.due.filter((x) => x !== t);
    };
  }

  /** Timers set and not yet fired or cancelled. */
  get pending(): number {
    return this.due.length;
  }

  /** Fires, in order, every timer due within `ms`; then lets what they started (store writes in memory) finish. */
  async advance(ms: number): Promise<void> {
    const until = this.now + ms;
    for (;;) {
      const next = this.due.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.due = this.due.filter((t) => t !== next);
      this.now = next.at;
      next.fn();
    }
    this.now = until;
    await new Promise((r) => setImmediate(r));
  }
}

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

test.run();
