// Read models of the held shops for the admin API and metrics: copies and counts, never the live state.
import { LEFT_REASONS, type LeftReason, type Missed, type Session } from '../routing/state.js';
import type { HeldShops } from './held-shops.js';
import type { VisitorContext } from '../domain/context.js';
import { findChild, parseElement, textOf } from '../xmpp/xml.js';

/** A left message: a visitor's kept messages waiting for the shop to open (or for room), oldest first. */
export interface LeftView {
  visitor: string;
  shop: string;
  leftAt: number;
  reason: LeftReason;
  group: string;
  waitedMs?: number; // it came from the queue after waiting this long
  messages: { at: number; text: string }[];
}

/** Abandoned waits of a shop per group key and reason since the shop's journal began. */
export interface AbandonedView {
  shop: string;
  group: string;
  reason: LeftReason;
  count: number;
  avgWaitMs: number;
}

export interface Waiting {
  visitor: string;
  shop: string;
  enqueuedAt: number;
  kept: number;
  group: string; // the groups it waits for; '' any agent
}

export class ShopViews {
  constructor(private readonly shops: HeldShops) {}

  sessions(shopJid?: string): (Session & { context?: VisitorContext })[] {
    const states = shopJid ? [this.shops.state(shopJid)].filter((s) => s !== undefined) : [...this.shops.all()].map(([, st]) => st);
    return states.flatMap((st) =>
      [...st.sessions.values()].map((s) => {
        const context = st.transcripts.get(s.visitor)?.context; // the visitor's (src/domain/context.ts)
        return { ...s, ...(context ? { context: structuredClone(context) } : {}) };
      }),
    );
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

  left(shopJid: string): LeftView[] {
    const st = this.shops.state(shopJid);
    if (!st) return [];
    return [...st.left].map(([visitor, l]) => ({
      visitor,
      shop: shopJid,
      leftAt: l.at,
      reason: l.reason,
      group: l.g,
      ...(l.waitedMs !== undefined ? { waitedMs: l.waitedMs } : {}),
      messages: (st.kept.get(visitor) ?? []).map((k) => {
        const body = findChild(parseElement(k.xml), 'body');
        return { at: k.at, text: body ? textOf(body) : '' };
      }),
    }));
  }

  abandoned(shopJid: string): AbandonedView[] {
    const st = this.shops.state(shopJid);
    if (!st) return [];
    return [...st.abandoned]
      .map(([key, a]) => {
        const reason = LEFT_REASONS.find((r) => key.startsWith(`${r}\n`))!;
        const group = key.slice(reason.length + 1);
        return { shop: shopJid, group, reason, count: a.count, avgWaitMs: a.count ? a.waitMs / a.count : 0 };
      })
      .sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : a.reason < b.reason ? -1 : 1));
  }

  hasLeft(shopJid: string, visitor: string): boolean {
    return this.shops.state(shopJid)?.left.has(visitor) ?? false;
  }

  counts(shopJid: string): { sessions: number; queue: number; kept: number; left: number } {
    const st = this.shops.state(shopJid);
    let kept = 0;
    for (const list of st?.kept.values() ?? []) kept += list.length;
    return { sessions: st?.sessions.size ?? 0, queue: st?.queue.size ?? 0, kept, left: st?.left.size ?? 0 };
  }

  stickyAgent(shopJid: string, visitor: string, at: number): string | undefined {
    return this.shops.state(shopJid)?.stickyAgent(visitor, at);
  }

  loadOf(shopJid: string, agent: string): number {
    return this.shops.state(shopJid)?.load(agent) ?? 0;
  }

  /** An agent's missed chats in a shop held here (none yet: zeros); undefined when the shop is not held here. */
  missedOf(shopJid: string, agent: string): Missed | undefined {
    const st = this.shops.state(shopJid);
    return st && { ...(st.missed.get(agent) ?? { inRow: 0, total: 0 }) };
  }
}
