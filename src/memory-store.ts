// In-memory Store: for unit tests and benchmarks. Shop locks serialise like SQL transactions would.
import { KeyedLock } from './lock.js';
import type { Agent, AgentResource, Membership, QueueEntry, Session, Shop, ShopTx, Store, StoredStanza } from './store.js';

const k = (...parts: string[]) => parts.join('\n');
// Every stored record is flat, so a shallow copy is a full copy (and far cheaper than structuredClone).
const copy = <T extends object | undefined>(x: T): T => (x === undefined ? x : { ...x });

export class MemoryStore implements Store {
  private readonly lock = new KeyedLock();
  private readonly shops = new Map<string, Shop>();
  private readonly members = new Map<string, Membership>();
  private readonly agents = new Map<string, Agent>();
  private readonly res = new Map<string, AgentResource>();
  private readonly sessions = new Map<string, Session>(); // shop\nvisitor
  private readonly queues = new Map<string, QueueEntry[]>(); // shop
  private readonly held = new Map<string, StoredStanza[]>(); // shop\nvisitor
  private readonly assigned = new Map<string, Map<string, number>>(); // shop
  private readonly sticky = new Map<string, { agent: string; until: number }>(); // shop\nvisitor
  private readonly hist = new Map<string, StoredStanza[]>(); // shop\nvisitor

  private readonly txs = new Map<string, ShopTx>(); // one per shop: it holds no state of its own

  withShop<T>(shop: string, work: (tx: ShopTx) => Promise<T>): Promise<T> {
    let tx = this.txs.get(shop);
    if (!tx) this.txs.set(shop, (tx = this.tx(shop)));
    return this.lock.run(shop, () => work(tx));
  }

  private tx(shop: string): ShopTx {
    const queue = () => this.queues.get(shop) ?? this.queues.set(shop, []).get(shop)!;
    return {
      getSession: async (v) => copy(this.sessions.get(k(shop, v))),
      putSession: async (s) => void this.sessions.set(k(shop, s.visitor), copy(s)),
      deleteSession: async (v) => void this.sessions.delete(k(shop, v)),
      sessions: async () => [...this.sessions.values()].filter((s) => s.shop === shop).map(copy),
      queue: async () => queue().map(copy),
      enqueue: async (visitor, at) => {
        if (!queue().some((e) => e.visitor === visitor)) queue().push({ visitor, shop, enqueuedAt: at });
      },
      dequeue: async (visitor) => void this.queues.set(shop, queue().filter((e) => e.visitor !== visitor)),
      hold: async (v, st) => {
        const list = this.held.get(k(shop, v)) ?? [];
        this.held.set(k(shop, v), [...list, copy(st)]);
      },
      takeHeld: async (v) => {
        const list = this.held.get(k(shop, v)) ?? [];
        this.held.delete(k(shop, v));
        return list;
      },
      lastAssigned: async () => new Map(this.assigned.get(shop) ?? []),
      markAssigned: async (agent, at) => {
        const m = this.assigned.get(shop) ?? new Map<string, number>();
        this.assigned.set(shop, m.set(agent, at));
      },
      stickyAgent: async (v, now) => {
        const s = this.sticky.get(k(shop, v));
        return s && s.until > now ? s.agent : undefined;
      },
      setSticky: async (v, agent, until) => void this.sticky.set(k(shop, v), { agent, until }),
      appendHistory: async (v, st, keep) => {
        const list = [...(this.hist.get(k(shop, v)) ?? []), copy(st)];
        this.hist.set(k(shop, v), list.slice(-keep));
      },
      history: async (v) => (this.hist.get(k(shop, v)) ?? []).map(copy),
      clearHistory: async (v) => void this.hist.delete(k(shop, v)),
    };
  }

  async listShops() { return [...this.shops.values()].map(copy); }
  async getShop(jid: string) { return copy(this.shops.get(jid)); }
  async putShop(shop: Shop) { this.shops.set(shop.jid, copy(shop)); }
  async deleteShop(jid: string) {
    this.shops.delete(jid);
    for (const [key, m] of this.members) if (m.shop === jid) this.members.delete(key);
  }

  async memberships() { return [...this.members.values()].map(copy); }
  async putMembership(m: Membership) { this.members.set(k(m.shop, m.agent), copy(m)); }
  async deleteMembership(shop: string, agent: string) { this.members.delete(k(shop, agent)); }

  async getAgent(jid: string) { return copy(this.agents.get(jid)); }
  async putAgent(agent: Agent) { this.agents.set(agent.jid, copy(agent)); }

  async setResource(r: AgentResource) { this.res.set(k(r.agent, r.resource), copy(r)); }
  async removeResource(agent: string, resource: string) { this.res.delete(k(agent, resource)); }
  async clearNode(node: string) {
    for (const [key, r] of this.res) if (r.node === node) this.res.delete(key);
  }
  async resources() { return [...this.res.values()].map(copy); }

  async allSessions() { return [...this.sessions.values()].map(copy); }
  async close() {}
}
