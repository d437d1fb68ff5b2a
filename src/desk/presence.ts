// Who is online and how: the agents' resources as the shims report them, and each agent's
// service status. Kept in memory for decisions; written through to the store for the admin
// view and for a sidecar that starts later.
//
// Presence belongs to the ejabberd node that reported it: each shim reports only the sessions
// its own node holds, and each is filed under the node whose stream said so. A resource is held
// per node (the same resource may briefly be held by two nodes, when it reconnected on another
// node before the old one's close arrived), and only that node's close or unavailable presence
// removes it there. What a node reported lives as long as the node is connected: when its last
// stream closes, it is dropped unless the node comes back within a grace period (a restart, a
// reconnect); when a live node reports another one gone from the cluster, see nodeDown().
// Presence loaded from the store counts as reported by a node that is not connected yet.
import { agentState, type AgentState } from '../routing/availability.js';
import type { AgentResource, AgentStatus } from '../domain/shop.js';
import type { Store } from './ports.js';
import type { Log } from '../domain/log.js';

/** One-shot timers; the default is the process's own (unref'd: a grace period never keeps a sidecar alive). */
export interface Timers {
  /** Runs `fn` once after `ms`; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
}

const realTimers: Timers = {
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface PresenceOptions {
  /** How long a node whose streams all closed may take to come back before its presence is dropped. */
  nodeGraceMs?: number;
  /** Where the grace periods are timed (tests move time by hand). */
  timers?: Timers;
  log?: Log;
  /** A node's presence was dropped (its agents may now be offline). */
  onNodeGone?: (node: string, why: string) => void;
}

/** The key of one resource as one node holds it. */
const held = (resource: string, node: string) => JSON.stringify([resource, node]);

export class Presence {
  private readonly byAgent = new Map<string, Map<string, AgentResource>>(); // agent → held(resource, node) → it
  private readonly statuses = new Map<string, AgentStatus>();
  private readonly streams = new Map<string, number>(); // node → streams open now
  private readonly graceTimers = new Map<string, () => void>(); // node → cancels its grace timer
  private writes: Promise<void> = Promise.resolve(); // the store writes, in order (write())
  private readonly reportedDown = new Set<string>(); // reported gone by another node while its streams were open here
  private readonly nodeGraceMs: number;
  private readonly timers: Timers;

  constructor(
    private readonly store: Store,
    private readonly opts: PresenceOptions = {},
  ) {
    this.nodeGraceMs = opts.nodeGraceMs ?? 30_000;
    this.timers = opts.timers ?? realTimers;
  }

  async load(): Promise<void> {
    await this.loadStatuses();
    for (const r of await this.store.resources()) this.remember(r);
    for (const node of this.nodes()) this.expectBack(node);
  }

  /** Statuses set through another sidecar (its admin API, an agent's /status) reach this one. */
  async loadStatuses(): Promise<void> {
    for (const a of await this.store.listAgents()) this.statuses.set(a.jid, a.status);
  }

  state = (agent: string): AgentState => {
    const resources = this.byAgent.get(agent);
    return agentState(this.statuses.get(agent) ?? 'standard', resources ? [...resources.values()] : []);
  };

  status(agent: string): AgentStatus {
    return this.statuses.get(agent) ?? 'standard';
  }

  resourcesOf(agent: string): AgentResource[] {
    return [...(this.byAgent.get(agent)?.values() ?? [])];
  }

  /** Nodes that reported presence we still hold. */
  nodes(): string[] {
    const out = new Set<string>();
    for (const mine of this.byAgent.values()) for (const r of mine.values()) out.add(r.node);
    return [...out];
  }

  async setStatus(agent: string, status: AgentStatus): Promise<void> {
    await this.store.putAgent({ jid: agent, status });
    this.statuses.set(agent, status);
  }

  /** Applied in memory at once; the returned promise is the store write. */
  set(r: AgentResource): Promise<void> {
    this.remember(r);
    return this.write(() => this.store.setResource(r));
  }

  /**
   * `node` says the resource is gone (closed, or unavailable): only what that node reported goes. The same resource
   * reported by another node since (it reconnected there) stays, whatever order the two nodes' events arrive in.
   */
  remove(agent: string, resource: string, node: string): Promise<void> {
    const mine = this.byAgent.get(agent);
    if (!mine?.delete(held(resource, node))) return Promise.resolve();
    if (mine.size === 0) this.byAgent.delete(agent);
    return this.storeResource(agent, resource);
  }

  // ---- liveness of nodes ------------------------------------------------------------

  /** A node's stream said hello: it is alive, and reports its presence again (what it reported before is void). */
  streamOpened(node: string): Promise<void> {
    this.streams.set(node, (this.streams.get(node) ?? 0) + 1);
    this.reportedDown.delete(node);
    this.graceTimers.get(node)?.();
    this.graceTimers.delete(node);
    return this.clearNode(node);
  }

  /**
   * A node's stream closed: with none left, its presence is dropped unless it comes back within the grace period; at
   * once if the cluster already reported it gone.
   */
  streamClosed(node: string): void {
    const n = (this.streams.get(node) ?? 1) - 1;
    if (n > 0) return void this.streams.set(node, n);
    this.streams.delete(node);
    if (this.reportedDown.delete(node)) void this.dropNode(node, 'reported down by the cluster, and its streams closed');
    else this.expectBack(node);
  }

  /**
   * A live node saw `node` leave the cluster (crash, stop, partition). A node with no stream here is gone for us too:
   * its presence is dropped at once. A node whose streams are still open here is spared: it is alive, and what it
   * reports is what its own node holds, told on its own stream, so the report stays true while the stream does (a
   * netsplit between ejabberd nodes cuts them off from each other, not from us; dropping both sides would leave no
   * agent online). It is remembered as reported down, and when its last stream closes its presence goes at once,
   * without a grace period: a crashed node's streams close within moments of the report, and a node cut off from us
   * too loses its streams to the keepalive.
   */
  async nodeDown(node: string): Promise<void> {
    if (this.streams.has(node)) {
      this.reportedDown.add(node);
      return;
    }
    this.graceTimers.get(node)?.();
    this.graceTimers.delete(node);
    await this.dropNode(node, 'reported down by the cluster');
  }

  /** A live node saw `node` (re)join the cluster (a healed split, a restart). */
  nodeUp(node: string): void {
    this.reportedDown.delete(node);
  }

  /** Whether `node` has a stream open here now. */
  connected(node: string): boolean {
    return this.streams.has(node);
  }

  /** The cluster as a node sees it: presence of nodes outside it and not connected here is dropped at once. */
  async clusterIs(members: readonly string[]): Promise<void> {
    for (const node of this.nodes()) if (!members.includes(node) && !this.streams.has(node)) await this.nodeDown(node);
  }

  /** Stops the grace timers (shutdown, tests). */
  close(): void {
    for (const cancel of this.graceTimers.values()) cancel();
    this.graceTimers.clear();
  }

  private expectBack(node: string): void {
    if (this.graceTimers.has(node) || this.streams.has(node)) return;
    const cancel = this.timers.after(this.nodeGraceMs, () => {
      this.graceTimers.delete(node);
      if (!this.streams.has(node)) void this.dropNode(node, `not back within ${this.nodeGraceMs} ms`);
    });
    this.graceTimers.set(node, cancel);
  }

  private async dropNode(node: string, why: string): Promise<void> {
    const had = this.nodes().includes(node);
    await this.clearNode(node).catch((e) => this.opts.log?.warn('could not clear a node in the store', { node, err: e }));
    if (had) {
      this.opts.log?.info("dropped a node's presence: its agents are offline unless connected elsewhere", { node, why });
      this.opts.onNodeGone?.(node, why);
    }
  }

  private async clearNode(node: string): Promise<void> {
    const also: AgentResource[] = []; // resources held by another node too: the store keeps that one
    for (const [agent, mine] of this.byAgent) {
      for (const [key, r] of mine) {
        if (r.node !== node) continue;
        mine.delete(key);
        const other = this.heldElsewhere(agent, r.resource);
        if (other) also.push(other);
      }
      if (mine.size === 0) this.byAgent.delete(agent);
    }
    await this.write(async () => {
      await this.store.clearNode(node);
      for (const r of also) await this.store.setResource(r);
    });
  }

  /**
   * Store writes run one after another, in the order memory changed: each reflects memory as of its change, so
   * two that overlap (two nodes dropped at once) cannot leave a row memory no longer has.
   */
  private write(fn: () => Promise<void>): Promise<void> {
    const done = this.writes.then(fn);
    this.writes = done.catch(() => undefined);
    return done;
  }

  /** The store has one row per resource: what a node still holds of it, or none. */
  private storeResource(agent: string, resource: string): Promise<void> {
    const other = this.heldElsewhere(agent, resource);
    return this.write(() => (other ? this.store.setResource(other) : this.store.removeResource(agent, resource)));
  }

  private heldElsewhere(agent: string, resource: string): AgentResource | undefined {
    for (const r of this.byAgent.get(agent)?.values() ?? []) if (r.resource === resource) return r;
    return undefined;
  }

  private remember(r: AgentResource): void {
    let mine = this.byAgent.get(r.agent);
    if (!mine) this.byAgent.set(r.agent, (mine = new Map()));
    mine.set(held(r.resource, r.node), { ...r });
  }
}
