// Who is online and how: the agents' resources as the shims report them, and each agent's
// service status. Kept in memory for decisions; written through to the store for the admin
// view and for a sidecar that starts later.
//
// Presence belongs to the ejabberd node that reported it and lives as long as that node is
// connected: when a node's last stream closes, what it reported is dropped unless it comes
// back within a grace period (a restart, a reconnect); when a live node reports another one
// gone from the cluster, that node's presence is dropped at once. Presence loaded from the
// store counts as reported by a node that is not connected yet.
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

export class Presence {
  private readonly byAgent = new Map<string, Map<string, AgentResource>>();
  private readonly statuses = new Map<string, AgentStatus>();
  private readonly streams = new Map<string, number>(); // node → streams open now
  private readonly graceTimers = new Map<string, () => void>(); // node → cancels its grace timer
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
    return this.store.setResource(r);
  }

  remove(agent: string, resource: string): Promise<void> {
    const mine = this.byAgent.get(agent);
    mine?.delete(resource);
    if (mine?.size === 0) this.byAgent.delete(agent);
    return this.store.removeResource(agent, resource);
  }

  // ---- liveness of nodes ------------------------------------------------------------

  /** A node's stream said hello: it is alive, and reports its presence again (what it reported before is void). */
  streamOpened(node: string): Promise<void> {
    this.streams.set(node, (this.streams.get(node) ?? 0) + 1);
    this.graceTimers.get(node)?.();
    this.graceTimers.delete(node);
    return this.clearNode(node);
  }

  /** A node's stream closed: with none left, its presence is dropped unless it comes back within the grace period. */
  streamClosed(node: string): void {
    const n = (this.streams.get(node) ?? 1) - 1;
    if (n > 0) return void this.streams.set(node, n);
    this.streams.delete(node);
    this.expectBack(node);
  }

  /** A live node saw `node` leave the cluster (crash, stop, partition): its users are gone with it. */
  async nodeDown(node: string): Promise<void> {
    this.graceTimers.get(node)?.();
    this.graceTimers.delete(node);
    await this.dropNode(node, 'reported down by the cluster');
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

  private clearNode(node: string): Promise<void> {
    for (const [agent, mine] of this.byAgent) {
      for (const [res, r] of mine) if (r.node === node) mine.delete(res);
      if (mine.size === 0) this.byAgent.delete(agent);
    }
    return this.store.clearNode(node);
  }

  private remember(r: AgentResource): void {
    let mine = this.byAgent.get(r.agent);
    if (!mine) this.byAgent.set(r.agent, (mine = new Map()));
    mine.set(r.resource, { ...r });
  }
}
