// Read models of the held shops for the admin API and metrics: copies and counts, never the live state.
import type { Session } from '../routing/state.js';
import type { HeldShops } from './held-shops.js';

export interface Waiting {
  visitor: string;
  shop: string;
  enqueuedAt: number;
  kept: number;
  group: string; // the groups it waits for; '' any agent
}

export class ShopViews {
  constructor(private readonly shops: HeldShops) {}

  sessions(shopJid?: string): Session[] {
    const states = shopJid ? [this.shops.state(shopJid)].filter((s) => s !== undefined) : [...this.shops.all()].map(([, st]) => st);
    return states.flatMap((st) => [...st.sessions.values()].map((s) => ({ ...s })));
  }

  queue(shopJid: string): Waiting[] {
    const st = this.shops.state(shopJid);
    return st
      ? [...st.queue].map(([visitor, at]) => ({
          visitor,
          shop: shopJid,
          enqueuedAt: at,
          kept: st.kept.get(visitor)?.length ?? 0,
          group: st.queueGroup.get(visitor) ?? '',
        }))
      : [];
  }

  counts(shopJid: string): { sessions: number; queue: number; kept: number } {
    const st = this.shops.state(shopJid);
    let kept = 0;
    for (const list of st?.kept.values() ?? []) kept += list.length;
    return { sessions: st?.sessions.size ?? 0, queue: st?.queue.size ?? 0, kept };
  }

  stickyAgent(shopJid: string, visitor: string, at: number): string | undefined {
    return this.shops.state(shopJid)?.stickyAgent(visitor, at);
  }

  loadOf(shopJid: string, agent: string): number {
    return this.shops.state(shopJid)?.load(agent) ?? 0;
  }
}
