// Group commit (src/desk/journal.ts) over a journal store whose writes the test completes
// or fails by hand: batching, durability before release, deadlines and failures taken back.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Journal,
  type NotDurable,
  type JournalStore,
  type LoadedShop,
  type ShopRecord,
  type SnapshotWrite,
  SMALL_BATCH,
  lingers,
} from '../../../src/desk/journal.js';
import { waitUntil } from '../../support/wait.js';
import { Changes } from '../../../src/routing/changes.js';
import { ShopState, type Change } from '../../../src/routing/state.js';
import { DEFAULT_LIMITS } from '../../../src/domain/shop.js';

/** Each append waits until the test completes or fails it. */
class ManualStore implements JournalStore {
  writes: { records: ShopRecord[]; snapshots: SnapshotWrite[]; done(): void; fail(e: Error): void }[] = [];
  async append(records: ShopRecord[], snapshots: SnapshotWrite[]) {
    await new Promise<void>((done, fail) => this.writes.push({ records, snapshots, done, fail }));
  }
  async load(): Promise<LoadedShop> {
    return { batches: [] };
  }
  async forget() {}
}

const tick = () => new Promise((r) => setImmediate(r));
const flushTicks = async (n = 3) => {
  for (let i = 0; i < n; i++) await tick();
};

function setup(opts: { snapshotMinChanges?: number; commitDelayMs?: number } = {}) {
  let clock = 1000;
  const store = new ManualStore();
  const states = new Map([
    ['s1', new ShopState('s1', DEFAULT_LIMITS)],
    ['s2', new ShopState('s2', DEFAULT_LIMITS)],
  ]);
  const journal = new Journal(store, { states: (s) => states.get(s), now: () => clock, ...opts });
  const settled: string[] = [];
  /** Applies a change to a shop now and commits it; records how the commit settled. */
  const commit = (shop: string, c: Change, deadline = Infinity, name = `${shop}:${c.op}:${'v' in c ? c.v : ''}`) => {
    const w = new Changes(states.get(shop)!);
    w.do(c);
    return journal.commit(shop, w.list, w.undos, deadline).then(
      () => void settled.push(`${name} ok`),
      (e) => void settled.push(`${name} ${(e as NotDurable).reason}`),
    );
  };
  return {
    store,
    states,
    journal,
    settled,
    commit,
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

const open = (v: string, agent = 'a'): Change => ({ op: 'open', v, agent, at: 1 });

test('decisions of one moment share one write; those made during it share the next', async () => {
  const { store, journal, settled, commit } = setup();
  const first = [commit('s1', open('v1')), commit('s1', open('v2')), commit('s2', open('v3'))];
  await flushTicks();
  assert.is(store.writes.length, 1);
  assert.equal(
    store.writes[0].records.map((r) => [r.shop, r.changes.length]),
    [
      ['s1', 2],
      ['s2', 1],
    ],
  );
  const second = [commit('s1', open('v4')), commit('s1', open('v5'))];
  await flushTicks();
  assert.is(store.writes.length, 1, 'no second write while the first is in flight');
  assert.equal(settled, [], 'nothing is released before it is durable');
  assert.is(journal.backlog, 5);
  store.writes[0].done();
  await Promise.all(first);
  assert.equal(settled, ['s1:open:v1 ok', 's1:open:v2 ok', 's2:open:v3 ok']);
  await flushTicks();
  assert.is(store.writes.length, 2);
  assert.equal(
    store.writes[1].records[0].changes.map((c) => ('v' in c ? c.v : '')),
    ['v4', 'v5'],
  );
  store.writes[1].done();
  await Promise.all(second);
  assert.is(journal.backlog, 0);
  assert.is(journal.busy('s1'), false);
});

test('a decision that cannot be durable before its deadline is taken back, with every later one of its shop', async () => {
  const { store, states, settled, commit, advance } = setup();
  const s1 = states.get('s1')!;
  const inFlight = commit('s1', open('v0'));
  await flushTicks();
  const late = [
    commit('s1', open('v1'), 1500), // will be late
    commit('s1', { op: 'said', v: 'v1', by: 'visitor', at: 2, xml: '<m/>' }), // builds on v1's session
    commit('s2', open('v9'), 1500 + 10_000), // another shop, in time
  ];
  assert.ok(s1.sessions.has('v1'), 'applied in memory at once');
  advance(1000); // past v1's deadline while v0's write is still in flight
  store.writes[0].done();
  await inFlight;
  await Promise.all(late.slice(0, 2));
  assert.equal(settled, ['s1:open:v0 ok', 's1:open:v1 deadline', 's1:said:v1 deadline']);
  assert.ok(!s1.sessions.has('v1') && !s1.history.has('v1'), 'no phantom session, no history');
  assert.ok(s1.sessions.has('v0'), 'what was durable stays');
  await flushTicks();
  assert.equal(
    store.writes[1].records.map((r) => r.shop),
    ['s2'],
    'only the other shop is written',
  );
  store.writes[1].done();
  await flushTicks();
  assert.ok(settled.includes('s2:open:v9 ok'));
});

test('a failed write takes back its batch and what was decided on top of it; the next write goes on', async () => {
  const { store, states, settled, commit } = setup();
  const s1 = states.get('s1')!;
  const a = commit('s1', open('v1'));
  await flushTicks();
  const b = commit('s1', { op: 'enqueue', v: 'v2', at: 3 });
  const c = commit('s2', open('v3'));
  store.writes[0].fail(new Error('disk full'));
  await Promise.all([a, b]);
  assert.equal(settled.slice(0, 2), ['s1:open:v1 write-failed', 's1:enqueue:v2 write-failed']);
  assert.is(s1.sessions.size + s1.queue.size, 0, 'state as before the batch');
  await flushTicks();
  assert.equal(
    store.writes[1].records.map((r) => r.shop),
    ['s2'],
  );
  store.writes[1].done();
  await c;
  assert.ok(states.get('s2')!.sessions.has('v3'));
});

test('a snapshot rides along once a shop journal outgrows twice its state, taken as this batch leaves it', async () => {
  const { store, commit } = setup({ snapshotMinChanges: 3 });
  const said = (at: number): Change => ({ op: 'said', v: 'v0', by: 'visitor', at, xml: `<m n='${at}'/>` });
  const writeOne = async (c: Change) => {
    const p = commit('s1', c);
    await flushTicks();
    const w = store.writes.at(-1)!;
    w.done();
    await p;
    return w.snapshots.length;
  };
  // State: one session with a history and a transcript (size 3), so the journal may hold 6 changes before a snapshot.
  const carried = [await writeOne(open('v0'))];
  for (let i = 1; i <= 5; i++) carried.push(await writeOne(said(i)));
  assert.equal(carried, [0, 0, 0, 0, 0, 0]);
  const p = commit('s1', said(6));
  await flushTicks();
  const w = store.writes.at(-1)!;
  const after = commit('s1', said(7)); // decided after the seal: not in the snapshot
  assert.equal(
    w.snapshots.map((s) => s.shop),
    ['s1'],
  );
  const restored = ShopState.fromParts('s1', DEFAULT_LIMITS, w.snapshots[0].parts);
  assert.equal(
    restored.history.get('v0')!.map((m) => m.xml),
    [1, 2, 3, 4, 5, 6].map((n) => `<m n='${n}'/>`),
  );
  w.done();
  await p;
  await flushTicks();
  store.writes.at(-1)!.done();
  await after;
  assert.is(store.writes.at(-1)!.snapshots.length, 0, 'the count starts again after a snapshot');
});

test('a snapshot comes in bounded parts, one record per item, and rebuilds the same state (order included)', () => {
  const st = new ShopState('s1', { ...DEFAULT_LIMITS, stickyMax: 10 });
  const w = new Changes(st);
  for (let i = 0; i < 6; i++) w.do({ op: 'open', v: `v${i}`, agent: i % 2 ? 'a' : 'b', at: i });
  for (let i = 0; i < 6; i++) w.do({ op: 'said', v: `v${i}`, by: 'visitor', at: 10 + i, xml: `<m i='${i}'>${'x'.repeat(50)}</m>` });
  for (const v of ['q3', 'q1', 'q2']) w.do({ op: 'enqueue', v, at: 20 });
  w.do({ op: 'keep', v: 'q1', at: 21, xml: '<k/>' });
  w.do({ op: 'close', v: 'v5', stickyUntil: 99 });
  w.do({ op: 'close', v: 'v2', stickyUntil: 98 });
  const parts = st.snapshotParts(300);
  assert.ok(parts.length > 3, `${parts.length} parts`);
  assert.ok(
    parts.every((p) => p.length <= 300 + 200),
    'each part near the bound',
  );
  const back = ShopState.fromParts('s1', st.limits, parts);
  assert.equal([...back.sessions.values()], [...st.sessions.values()]);
  assert.equal([...back.queue], [...st.queue]);
  assert.equal([...back.kept], [...st.kept]);
  assert.equal([...back.history], [...st.history]);
  assert.equal([...back.lastAssigned], [...st.lastAssigned]);
  assert.equal(back.stickyOldestFirst(), st.stickyOldestFirst());
  assert.equal([...back.byAgent.get('a')!].sort(), ['v1', 'v3']);
});

test('a commit that asks for its shop snapshot takes the later entries of that shop into its write (past maxBatch)', async () => {
  const store = new ManualStore();
  const st = new ShopState('s1', DEFAULT_LIMITS);
  const journal = new Journal(store, { states: () => st, maxBatch: 1 });
  const commit = (c: Change, snapshot = false) => {
    const w = new Changes(st);
    w.do(c);
    return journal.commit('s1', w.list, w.undos, Infinity, snapshot);
  };
  const first = commit({ op: 'enqueue', v: 'a@x', at: 1 });
  await flushTicks();
  assert.is(store.writes.length, 1);
  const forgot = commit({ op: 'forget', v: 'a@x' }, true);
  const later = commit({ op: 'enqueue', v: 'b@x', at: 2 });
  store.writes[0].done();
  await first;
  await flushTicks();
  assert.is(store.writes.length, 2);
  const { records, snapshots } = store.writes[1];
  assert.equal(
    records.map((r) => r.changes.map((c) => c.op)),
    [['forget', 'enqueue']],
  );
  // The snapshot is the state the write makes durable: b waits, a is gone.
  assert.equal(snapshots.length, 1);
  assert.not.match(snapshots[0].parts.join(''), 'a@x');
  assert.match(snapshots[0].parts.join(''), 'b@x');
  store.writes[1].done();
  await Promise.all([forgot, later]);
  assert.is(journal.backlog, 0);
});

test('a snapshot asked for that cannot be taken fails its write, which is taken back', async () => {
  const store = new ManualStore();
  const st = new ShopState('s1', DEFAULT_LIMITS);
  st.snapshotParts = () => {
    throw new RangeError('Invalid string length');
  };
  const errors: unknown[] = [];
  const journal = new Journal(store, { states: () => st, onError: (e) => errors.push(e) });
  const w = new Changes(st);
  w.do({ op: 'enqueue', v: 'a@x', at: 1 });
  const outcome = await journal.commit('s1', w.list, w.undos, Infinity, true).then(
    () => 'ok',
    (e) => (e as NotDurable).reason,
  );
  assert.equal([outcome, store.writes.length, st.queue.size, errors.length], ['write-failed', 0, 0, 1]);
});

test('a small batch waits for company only under steady load (the last write ended within commitDelayMs)', () => {
  assert.ok(lingers(1, 0, 2));
  assert.ok(lingers(SMALL_BATCH - 1, 1.9, 2));
  assert.not.ok(lingers(SMALL_BATCH, 0, 2), 'a batch big enough goes at once');
  assert.not.ok(lingers(1, 2, 2), 'after a quiet spell a decision is written at once');
  assert.not.ok(lingers(1, 0, 0), 'commitDelayMs 0: never');
});

test('with commitDelayMs, decisions right after a write share the next one; after a quiet spell one goes at once', async () => {
  const { store, commit, advance } = setup({ commitDelayMs: 30 });
  const first = commit('s1', open('v1'));
  await flushTicks();
  assert.is(store.writes.length, 1, 'the first decision (no write before it) is written at once');
  store.writes[0].done();
  await first;
  const next = [commit('s1', open('v2'))];
  await flushTicks();
  assert.is(store.writes.length, 1, 'right after a write, a lone decision waits for company');
  next.push(commit('s2', open('v3')), commit('s1', open('v4')));
  await waitUntil('the lingering batch written', () => store.writes.length === 2);
  assert.equal(
    store.writes[1].records.map((r) => [r.shop, r.changes.length]),
    [
      ['s1', 2],
      ['s2', 1],
    ],
  );
  store.writes[1].done();
  await Promise.all(next);
  advance(30);
  const quiet = commit('s1', open('v5'));
  await flushTicks();
  assert.is(store.writes.length, 3, 'after a quiet spell: written at once');
  store.writes[2].done();
  await quiet;
  const many = Array.from({ length: SMALL_BATCH }, (_, i) => commit('s2', open(`w${i}`)));
  await flushTicks();
  assert.is(store.writes.length, 4, 'company came: no waiting for the delay');
  assert.is(store.writes[3].records[0].changes.length, SMALL_BATCH);
  store.writes[3].done();
  await Promise.all(many);
});

test.run();
