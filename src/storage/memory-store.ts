// In-memory Store: for unit tests and benchmarks.
import type { Agent, AgentResource, Membership, Shop } from '../domain/shop.js';
import type { Store } from '../desk/ports.js';

const k = (...parts: string[]) => parts.join('\n');
// Records are flat but for shop limits and texts: copy those too, so callers never share an object with the store.
const copy = <T extends object | undefined>(x: T): T => {
  if (x === undefined) return x;
  if (!('limits' in x)) return { ...x };
  const shop = x as unknown as Shop;
  return structuredClone(shop) as unknown as T;
};

export class MemoryStore implements Store {
  private readonly shops = new Map<string, Shop>();
  private readonly members = new Map<string, Membership>();
  private readonly agents = new Map<string, Agent>();
  private readonly res = new Map<string, AgentResource>();

  async listShops() {
    return [...this.shops.values()].map(copy);
  }
  async getShop(jid: string) {
    return copy(this.shops.get(jid));
  }
  async putShop(shop: Shop) {
    this.shops.set(shop.jid, copy(shop));
  }
  async deleteShop(jid: string) {
    this.shops.delete(jid);
    for (const [key, m] of this.members) if (m.shop === jid) this.members.delete(key);
  }

  async memberships() {
    return [...this.members.values()].map(copy);
  }
  async putMembership(m: Membership) {
    this.members.set(k(m.shop, m.agent), copy(m));
  }
  async deleteMembership(shop: string, agent: string) {
    this.members.delete(k(shop, agent));
  }

  async getAgent(jid: string) {
    return copy(this.agents.get(jid));
  }
  async listAgents() {
    return [...this.agents.values()].map(copy);
  }
  async putAgent(agent: Agent) {
    this.agents.set(agent.jid, copy(agent));
  }

  async setResource(r: AgentResource) {
    this.res.set(k(r.agent, r.resource), copy(r));
  }
  async removeResource(agent: string, resource: string) {
    this.res.delete(k(agent, resource));
  }
  async clearNode(node: string) {
    for (const [key, r] of this.res) if (r.node === node) this.res.delete(key);
  }
  async resources() {
    return [...this.res.values()].map(copy);
  }

  async close() {}
}
