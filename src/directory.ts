// Shops and their agents, read from the store and kept in memory for the per-stanza path.
import type { Config } from './config.js';
import type { Membership, Shop, Store } from './store.js';

export class Directory {
  private shops = new Map<string, Shop>();
  private members = new Map<string, Membership[]>(); // by shop
  private agents = new Set<string>();

  constructor(private readonly store: Store) {}

  /** Re-reads shops and memberships (after an admin change, and on every timer tick for other sidecars' changes). */
  async reload(): Promise<void> {
    const [shops, members] = await Promise.all([this.store.listShops(), this.store.memberships()]);
    this.shops = new Map(shops.map((s) => [s.jid, s]));
    this.members = new Map(shops.map((s) => [s.jid, members.filter((m) => m.shop === s.jid)]));
    this.agents = new Set(members.map((m) => m.agent));
  }

  shop(jid: string): Shop | undefined {
    return this.shops.get(jid);
  }
  allShops(): Shop[] {
    return [...this.shops.values()];
  }
  membersOf(shop: string): Membership[] {
    return this.members.get(shop) ?? [];
  }
  membership(shop: string, agent: string): Membership | undefined {
    return this.membersOf(shop).find((m) => m.agent === agent);
  }
  isAgent(jid: string): boolean {
    return this.agents.has(jid);
  }
  shopsOf(agent: string): Shop[] {
    return this.allShops().filter((s) => this.membership(s.jid, agent));
  }

  /** What the shim must forward: messages to shops, readmarks to and from agents. */
  watchList(): { shops: string[]; agents: string[] } {
    return { shops: [...this.shops.keys()], agents: [...this.agents] };
  }
}

/** Writes the config file's shops and agents into an empty store (the embedded defaults). */
export async function seedStore(store: Store, config: Config, now = Date.now()): Promise<boolean> {
  if ((await store.listShops()).length > 0) return false;
  for (const s of config.shops) {
    await store.putShop({ jid: s.jid, name: s.name, welcome: s.welcome, noAgentText: s.noAgentText, strategy: s.strategy, queueEnabled: s.queueEnabled });
    for (const a of s.agents) {
      await store.putMembership({ shop: s.jid, agent: a.jid, maxSessions: a.maxSessions, joinedAt: now });
      if (!(await store.getAgent(a.jid))) await store.putAgent({ jid: a.jid, status: a.status });
    }
  }
  return true;
}
