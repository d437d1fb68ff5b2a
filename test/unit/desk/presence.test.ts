// Presence liveness: what a node reported lives as long as the node is connected, or comes back
// within the grace period; a node the cluster reports gone takes its presence with it at once.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../../../src/storage/memory-store.js';
import { Presence } from '../../../src/desk/presence.js';

const GRACE = 80;
const res = (agent: string, node: string, resource = 'pc') => ({ agent, resource, node, show: '', priority: 0 });

/** A Presence whose node drops are awaited (grace timers are real, but short). */
async function world(store = new MemoryStore()) {
  const gone: string[] = [];
  const waiters: (() => void)[] = [];
  const p = new Presence(store, {
    nodeGraceMs: GRACE,
    onNodeGone: (node) => {
      gone.push(node);
      for (const w of waiters.splice(0)) w();
    },
  });
  await p.load();
  const nextGone = () =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no node was dropped within 5 s')), 5000);
      waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  return { p, store, gone, nextGone };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Grace timers are unref'd (they must not keep a sidecar alive): keep the test process up while they run.
let alive: NodeJS.Timeout;
test.before(() => {
  alive = setInterval(() => undefined, 1000);
});
test.after(() => clearInterval(alive));

test('a node whose stream closed and did not come back: its agents go offline after the grace period', async () => {
  const { p, store, gone, nextGone } = await world();
  await p.streamOpened('n1');
  await p.streamOpened('n2');
  await p.set(res('ann@x', 'n1'));
  await p.set(res('bob@x', 'n2'));
  const dropped = nextGone();
  p.streamClosed('n1');
  assert.ok(p.state('ann@x').online, 'still online during the grace period');
  await dropped;
  assert.equal(gone, ['n1']);
  assert.not.ok(p.state('ann@x').online);
  assert.ok(p.state('bob@x').online, "another node's agents stay");
  assert.equal(
    (await store.resources()).map((r) => r.agent),
    ['bob@x'],
    'gone from the store too',
  );
  p.close();
});

test('a node that comes back within the grace period keeps its place; two streams of one node count as one', async () => {
  const { p, gone } = await world();
  await p.streamOpened('n1');
  await p.streamOpened('n1'); // e.g. a second stream during a reconnect
  await p.set(res('ann@x', 'n1'));
  p.streamClosed('n1');
  await sleep(GRACE * 2);
  assert.ok(p.state('ann@x').online, 'one stream of n1 is still open');
  p.streamClosed('n1');
  await sleep(GRACE / 4);
  await p.streamOpened('n1'); // back: it reports its presence again
  await p.set(res('ann@x', 'n1'));
  await sleep(GRACE * 2);
  assert.equal(gone, [], 'never dropped');
  assert.ok(p.state('ann@x').online);
  p.close();
});

test('a node reported down by the cluster goes at once; presence from the store waits for its node', async () => {
  const store = new MemoryStore();
  await store.setResource(res('ann@x', 'n1'));
  await store.setResource(res('bob@x', 'n2'));
  await store.setResource(res('cat@x', 'n3'));
  const { p, gone, nextGone } = await world(store);
  assert.ok(p.state('ann@x').online && p.state('bob@x').online && p.state('cat@x').online, 'loaded as they were');
  await p.streamOpened('n1'); // n1 reconnects: it reports again (here: ann)
  await p.set(res('ann@x', 'n1'));
  await p.nodeDown('n2'); // n1 saw n2 leave the cluster
  assert.equal(gone, ['n2']);
  assert.not.ok(p.state('bob@x').online);
  const dropped = nextGone();
  await dropped; // n3 never connected: its presence goes after the grace period
  assert.equal(gone, ['n2', 'n3']);
  assert.ok(p.state('ann@x').online);
  assert.not.ok(p.state('cat@x').online);
  p.close();
});

test("a node's hello names the cluster: presence of nodes outside it and not connected goes at once", async () => {
  const store = new MemoryStore();
  await store.setResource(res('ann@x', 'old-name@host'));
  await store.setResource(res('bob@x', 'n2'));
  const { p, gone } = await world(store);
  await p.streamOpened('n1');
  await p.clusterIs(['n1', 'n2']);
  assert.equal(gone, ['old-name@host']);
  assert.not.ok(p.state('ann@x').online);
  assert.ok(p.state('bob@x').online, 'n2 is in the cluster: it gets its grace period to connect');
  p.close();
});

test.run();
