// A model of an ejabberd cluster of 2–3 nodes and its agents' sessions, against the real Presence and
// ShimEvents. Random runs of: agents connecting (also again on another node, with the same resource),
// going unavailable and away; a node's stream to the sidecar dropping and coming back; a node restarting,
// killed and started; splits between two nodes and their heals; the sidecar restarting; time passing.
// Each node's shim speaks as the shim does: only for the sessions its own node holds, on its own stream,
// in order (hello and a full report when the stream opens, and again when the sidecar asks); nothing
// while disconnected; a node reports the others leaving and joining. Messages of different nodes arrive
// in any order. Once everything is delivered and the grace period is over, the sidecar must hold exactly
// the truth: every resource it holds is an available session on the node it is filed under, and every
// available session of a node connected here is held under that node.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Directory } from '../../../src/desk/directory.js';
import { Presence } from '../../../src/desk/presence.js';
import { ShimEvents } from '../../../src/desk/shim-events.js';
import { SessionEvent_Kind as Kind } from '../../../src/gen/consult/v1/filter.js';
import { MemoryStore } from '../../../src/storage/memory-store.js';
import { HandTimers } from '../../support/hand-timers.js';

const GRACE = 30_000;
const AGENTS = ['ann@x', 'bob@x', 'cat@x'];
const RESOURCES = ['pc', 'phone'];

type Msg =
  | { k: 'hello'; cluster: string[] }
  | { k: 'event'; kind: Kind; jid: string }
  | { k: 'cluster'; node: string; up: boolean }
  | { k: 'closed' };

interface SimNode {
  name: string;
  alive: boolean;
  /** Its shim's stream to the sidecar is open. */
  connected: boolean;
  /** agent/resource → available. */
  sessions: Map<string, boolean>;
  /** Sent on its stream, not read by the sidecar yet (in order). */
  queue: Msg[];
}

type Op =
  | { t: 'connect'; node: number; agent: number; res: number }
  | { t: 'disconnect'; agent: number; res: number }
  | { t: 'toggleAway'; agent: number; res: number }
  | { t: 'streamDrop'; node: number }
  | { t: 'streamBack'; node: number }
  | { t: 'restart'; node: number }
  | { t: 'kill'; node: number }
  | { t: 'start'; node: number }
  | { t: 'split'; a: number; b: number }
  | { t: 'heal'; a: number; b: number }
  | { t: 'deliver'; node: number; count: number }
  | { t: 'time'; ms: number }
  | { t: 'sidecarRestart' };

const key = (agent: string, resource: string) => `${agent}/${resource}`;
const pair = (a: string, b: string) => [a, b].sort().join(' ');

class Sim {
  readonly nodes: SimNode[];
  private readonly splits = new Set<string>();
  readonly store = new MemoryStore();
  readonly timers = new HandTimers();
  presence!: Presence;
  events!: ShimEvents;

  constructor(size: number) {
    this.nodes = Array.from({ length: size }, (_, i) => ({
      name: `n${i}@host`,
      alive: true,
      connected: false,
      sessions: new Map(),
      queue: [],
    }));
  }

  async startSidecar(): Promise<void> {
    this.presence?.close();
    this.presence = new Presence(this.store, { nodeGraceMs: GRACE, timers: this.timers });
    await this.presence.load();
    const directory = { isAgent: (a: string) => AGENTS.includes(a), shopsOf: () => [] } as unknown as Directory;
    this.events = new ShimEvents({
      directory,
      presence: this.presence,
      drainQueue: async () => undefined,
      // ShimLink.reportPresence: the node's shim reports its sessions again, after what it sent before.
      askPresence: (name) => {
        const n = this.byName(name);
        if (n.alive && n.connected) this.report(n);
      },
    });
    // Whatever was on its way to the old sidecar is lost; every live shim connects to the new one.
    for (const n of this.nodes) {
      n.queue = [];
      n.connected = false;
      if (n.alive) this.connect(n);
    }
  }

  private byName(name: string): SimNode {
    return this.nodes.find((n) => n.name === name)!;
  }

  /** Whether a and b see each other in the cluster. */
  private together(a: SimNode, b: SimNode): boolean {
    return a.alive && b.alive && !this.splits.has(pair(a.name, b.name));
  }

  /** What a node's shim sends: dropped while its stream is down. */
  private send(n: SimNode, msg: Msg): void {
    if (n.connected) n.queue.push(msg);
  }

  private event(n: SimNode, kind: Kind, k: string): void {
    this.send(n, { kind, k: 'event', jid: k });
  }

  /** consult_agents:report_agents/2: the available sessions of this node only. */
  private report(n: SimNode): void {
    for (const [k, available] of n.sessions) if (available) this.event(n, Kind.PRESENCE_SET, k);
  }

  /** A stream opens: hello with the cluster as the node sees it, then the report once the watch list comes. */
  private connect(n: SimNode): void {
    n.connected = true;
    const cluster = [n.name, ...this.nodes.filter((o) => o !== n && this.together(n, o)).map((o) => o.name)];
    this.send(n, { k: 'hello', cluster });
    this.report(n);
  }

  private disconnect(n: SimNode): void {
    if (!n.connected) return;
    n.queue.push({ k: 'closed' });
    n.connected = false;
  }

  /** Every other node that saw it tells its change (nodedown/nodeup). */
  private tellOthers(n: SimNode, up: boolean, seen: (o: SimNode) => boolean): void {
    for (const o of this.nodes) if (o !== n && seen(o)) this.send(o, { k: 'cluster', node: n.name, up });
  }

  private holder(k: string): SimNode | undefined {
    return this.nodes.find((n) => n.alive && n.sessions.has(k));
  }

  private closeSession(n: SimNode, k: string): void {
    if (n.sessions.get(k)) this.event(n, Kind.PRESENCE_UNSET, k);
    n.sessions.delete(k);
    this.event(n, Kind.SESSION_CLOSE, k);
  }

  private kill(n: SimNode): void {
    const saw = this.nodes.filter((o) => o !== n && this.together(n, o));
    n.alive = false;
    n.sessions.clear();
    this.disconnect(n);
    this.tellOthers(n, false, (o) => saw.includes(o));
  }

  private start(n: SimNode): void {
    n.alive = true;
    for (const p of [...this.splits]) if (p.split(' ').includes(n.name)) this.splits.delete(p);
    this.tellOthers(n, true, (o) => o.alive);
    this.connect(n);
  }

  /** The sidecar reads one message of a node's stream, as src/grpc/server.ts passes it on. */
  private async deliverOne(n: SimNode): Promise<boolean> {
    const m = n.queue.shift();
    if (!m) return false;
    if (m.k === 'hello') await this.events.nodeConnected(n.name, m.cluster);
    else if (m.k === 'closed') this.events.nodeDisconnected(n.name);
    else if (m.k === 'cluster') await this.events.clusterChanged(m.node, m.up);
    else await this.events.handleEvent({ kind: m.kind, jid: m.jid, show: '', priority: 0, status: '' }, n.name);
    return true;
  }

  async apply(op: Op): Promise<void> {
    const at = (i: number) => this.nodes[i % this.nodes.length]!;
    switch (op.t) {
      case 'connect': {
        const n = at(op.node);
        const k = key(AGENTS[op.agent]!, RESOURCES[op.res]!);
        if (!n.alive || n.sessions.has(k)) return;
        const old = this.holder(k);
        if (old && !this.together(old, n)) return; // one full JID per cluster; not modelled across a split
        if (old) this.closeSession(old, k); // ejabberd ends the older session of the same resource
        n.sessions.set(k, true);
        this.event(n, Kind.SESSION_OPEN, k);
        this.event(n, Kind.PRESENCE_SET, k);
        return;
      }
      case 'disconnect': {
        const k = key(AGENTS[op.agent]!, RESOURCES[op.res]!);
        const n = this.holder(k);
        if (n) this.closeSession(n, k);
        return;
      }
      case 'toggleAway': {
        const k = key(AGENTS[op.agent]!, RESOURCES[op.res]!);
        const n = this.holder(k);
        if (!n) return;
        const available = !n.sessions.get(k);
        n.sessions.set(k, available);
        this.event(n, available ? Kind.PRESENCE_SET : Kind.PRESENCE_UNSET, k);
        return;
      }
      case 'streamDrop':
        if (at(op.node).alive) this.disconnect(at(op.node));
        return;
      case 'streamBack':
        if (at(op.node).alive && !at(op.node).connected) this.connect(at(op.node));
        return;
      case 'restart':
        if (!at(op.node).alive) return;
        this.kill(at(op.node));
        this.start(at(op.node));
        return;
      case 'kill':
        if (at(op.node).alive) this.kill(at(op.node));
        return;
      case 'start':
        if (!at(op.node).alive) this.start(at(op.node));
        return;
      case 'split':
      case 'heal': {
        const [a, b] = [at(op.a), at(op.b)];
        if (a === b || !a.alive || !b.alive) return;
        const split = this.splits.has(pair(a.name, b.name));
        if (split === (op.t === 'split')) return;
        if (op.t === 'split') this.splits.add(pair(a.name, b.name));
        else this.splits.delete(pair(a.name, b.name));
        this.send(a, { k: 'cluster', node: b.name, up: op.t === 'heal' });
        this.send(b, { k: 'cluster', node: a.name, up: op.t === 'heal' });
        return;
      }
      case 'deliver':
        for (let i = 0; i < op.count; i++) await this.deliverOne(at(op.node));
        return;
      case 'time':
        await this.timers.advance(op.ms);
        return;
      case 'sidecarRestart':
        await this.startSidecar();
        return;
    }
  }

  /** Every stream read to its end (in turns, as answers to ReportPresence may add more), then the grace period. */
  async settle(): Promise<void> {
    for (let more = true; more; ) {
      more = false;
      for (const n of this.nodes) if (await this.deliverOne(n)) more = true;
    }
    await this.timers.advance(GRACE + 1);
  }

  /** What is wrong with what the sidecar holds (in memory and in the store), or nothing. */
  async wrongs(): Promise<string[]> {
    const out: string[] = [];
    const held = AGENTS.flatMap((a) => this.presence.resourcesOf(a));
    for (const r of held) {
      const n = this.byName(r.node);
      if (!n.alive || !n.sessions.get(key(r.agent, r.resource)))
        out.push(`holds ${key(r.agent, r.resource)} under ${r.node}, which has no such available session`);
    }
    for (const n of this.nodes) {
      if (!n.alive || !n.connected) continue;
      for (const [k, available] of n.sessions)
        if (available && !held.some((r) => key(r.agent, r.resource) === k && r.node === n.name))
          out.push(`${k} is available on ${n.name}, which is connected, but not held under it`);
    }
    const stored = (await this.store.resources()).map((r) => `${key(r.agent, r.resource)}@${r.node}`).sort();
    const heldKeys = new Set(held.map((r) => key(r.agent, r.resource)));
    const storedKeys = new Set((await this.store.resources()).map((r) => key(r.agent, r.resource)));
    for (const s of stored) if (!held.some((r) => `${key(r.agent, r.resource)}@${r.node}` === s)) out.push(`the store has ${s}, not held`);
    for (const k of heldKeys) if (!storedKeys.has(k)) out.push(`${k} is held but not in the store`);
    return out;
  }
}

const node = fc.nat(2);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('connect' as const), node, agent: fc.nat(2), res: fc.nat(1) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('disconnect' as const), agent: fc.nat(2), res: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('toggleAway' as const), agent: fc.nat(2), res: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('streamDrop' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('streamBack' as const), node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const), node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('kill' as const), node }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('start' as const), node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('split' as const), a: node, b: node }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('heal' as const), a: node, b: node }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('deliver' as const), node, count: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('time' as const), ms: fc.integer({ min: 0, max: GRACE * 1.5 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('sidecarRestart' as const) }) },
);

async function run(size: number, ops: Op[]): Promise<string[]> {
  const sim = new Sim(size);
  await sim.startSidecar();
  for (const o of ops) await sim.apply(o);
  await sim.settle();
  const wrongs = await sim.wrongs();
  sim.presence.close();
  return wrongs;
}

test('after any run of sessions, stream drops, restarts, kills, splits and heals, the sidecar holds what each node holds', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 2, max: 3 }), fc.array(op, { maxLength: 80, size: 'medium' }), async (size, ops) => {
      assert.equal(await run(size, ops), []);
    }),
    { numRuns: 400 },
  );
});

// The cases the rules are for, spelled out.
test('a resource that reconnects on another node stays held when the old node says it closed, later', async () => {
  const ops: Op[] = [
    { t: 'connect', node: 0, agent: 0, res: 0 },
    { t: 'deliver', node: 0, count: 10 },
    { t: 'connect', node: 1, agent: 0, res: 0 }, // n0 ends the old session: its close is on n0's stream
    { t: 'deliver', node: 1, count: 10 }, // n1's presence first
  ];
  assert.equal(await run(2, ops), []);
});

test('a split that heals at once: both sides stay or come back, without any client reconnecting', async () => {
  const ops: Op[] = [
    { t: 'connect', node: 0, agent: 0, res: 0 },
    { t: 'connect', node: 1, agent: 1, res: 0 },
    { t: 'deliver', node: 0, count: 10 },
    { t: 'deliver', node: 1, count: 10 },
    { t: 'split', a: 0, b: 1 },
    { t: 'heal', a: 0, b: 1 },
  ];
  assert.equal(await run(2, ops), []);
});

test('an agent of a node that is killed goes, without a grace period, once its stream ended and another reported it down', async () => {
  for (const first of [0, 1]) {
    const sim = new Sim(2);
    await sim.startSidecar();
    for (const o of [
      { t: 'connect', node: 1, agent: 0, res: 0 },
      { t: 'deliver', node: 1, count: 10 },
      { t: 'kill', node: 1 },
      { t: 'deliver', node: first, count: 10 },
      { t: 'deliver', node: 1 - first, count: 10 },
    ] satisfies Op[])
      await sim.apply(o);
    await sim.timers.advance(0);
    assert.not.ok(sim.presence.state('ann@x').online, `${first === 0 ? 'the report' : 'the stream end'} first`);
    sim.presence.close();
  }
});

test.run();
