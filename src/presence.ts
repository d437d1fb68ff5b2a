// Who is online and how: the agents' resources as the shims report them, and each agent's
// service status. Kept in memory for decisions; written through to the store for the admin
// view and for a sidecar that takes over.
import { agentState, type AgentState } from './routing/availability.js';
import type { AgentResource, AgentStatus, Store } from './store.js';

export class Presence {
  private readonly byAgent = new Map<string, Map<string, AgentResource>>();
  private readonly statuses = new Map<string, AgentStatus>();

  constructor(private readonly store: Store) {}

  async load(): Promise<void> {
    for (const a of await this.store.listAgents()) this.statuses.set(a.jid, a.status);
    for (const r of await this.store.resources()) this.remember(r);
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

  /** A node's stream reopened: what it reported before is void, it reports again. */
  clearNode(node: string): Promise<void> {
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
