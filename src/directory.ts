// Shops and their agents, looked up by bare JID.
import type { AgentConfig, ShopConfig } from './config.js';

export class Directory {
  private readonly shops = new Map<string, ShopConfig>();

  constructor(shops: ShopConfig[]) {
    for (const s of shops) this.shops.set(s.jid, s);
  }

  shop(jid: string): ShopConfig | undefined {
    return this.shops.get(jid);
  }

  agentOf(shop: ShopConfig, jid: string): AgentConfig | undefined {
    return shop.agents.find((a) => a.jid === jid);
  }

  isAgent(jid: string): boolean {
    for (const s of this.shops.values()) if (this.agentOf(s, jid)) return true;
    return false;
  }

  /** What the shim must forward: messages to shops, readmarks to and from agents. */
  watchList(): { shops: string[]; agents: string[] } {
    const shops = [...this.shops.keys()];
    const agents = [...new Set([...this.shops.values()].flatMap((s) => s.agents.map((a) => a.jid)))];
    return { shops, agents };
  }
}
