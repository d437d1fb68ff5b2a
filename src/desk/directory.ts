// Shops and their agents, read from the store and kept in memory for the per-stanza path.
import type { Config } from '../domain/config.js';
import { resolveTexts, type Texts } from '../domain/texts.js';
import type { Membership, Shop } from '../domain/shop.js';
import type { Store } from './ports.js';

export class Directory {
  private shops = new Map<string, Shop>();
  private members = new Map<string, Map<string, Membership>>(); // shop → agent → membership
  private agents = new Map<string, Shop[]>(); // agent → its shops
  private texts = new Map<string, Texts>(); // shop → its texts, resolved once per reload
  private supervisors = new Set<string>(); // of any shop

  constructor(private readonly store: Store) {}

  /** Re-reads shops and memberships (after an admin change, and on every timer tick). */
  async reload(): Promise<void> {
    const [shops, members] = await Promise.all([this.store.listShops(), this.store.memberships()]);
    this.shops = new Map(shops.map((s) => [s.jid, s]));
    this.members = new Map(shops.map((s) => [s.jid, new Map()]));
    this.agents = new Map();
    this.texts = new Map(shops.map((s) => [s.jid, resolveTexts(s.language, s.texts)]));
    this.supervisors = new Set(shops.flatMap((s) => s.supervisors ?? []));
    for (const m of members) {
      const shop = this.shops.get(m.shop);
      if (!shop) continue;
      this.members.get(m.shop)!.set(m.agent, m);
      this.agents.set(m.agent, [...(this.agents.get(m.agent) ?? []), shop]);
    }
  }

  textsOf(shop: string): Texts {
    return this.texts.get(shop)!;
  }

  shop(jid: string): Shop | undefined {
    return this.shops.get(jid);
  }
  allShops(): Shop[] {
    return [...this.shops.values()];
  }
  /** A shop's memberships by agent. */
  memberMap(shop: string): ReadonlyMap<string, Membership> {
    return this.members.get(shop) ?? EMPTY;
  }
  membersOf(shop: string): Membership[] {
    return [...this.memberMap(shop).values()];
  }
  membership(shop: string, agent: string): Membership | undefined {
    return this.members.get(shop)?.get(agent);
  }
  /** An agent of some shop, or a supervisor of one: its presence matters. */
  isAgent(jid: string): boolean {
    return this.agents.has(jid) || this.supervisors.has(jid);
  }
  shopsOf(agent: string): Shop[] {
    return this.agents.get(agent) ?? [];
  }

  /** What the shim must forward: messages to shops, readmarks to and from agents. */
  watchList(): { shops: string[]; agents: string[] } {
    return { shops: [...this.shops.keys()], agents: [...new Set([...this.agents.keys(), ...this.supervisors])] };
  }
}

const EMPTY: ReadonlyMap<string, Membership> = new Map();

/** Writes the config file's shops and agents into an empty store (the embedded defaults). */
export async function seedStore(store: Store, config: Config, now = Date.now()): Promise<boolean> {
  if ((await store.listShops()).length > 0) return false;
  for (const s of config.shops) {
    await store.putShop({
      jid: s.jid,
      name: s.name,
      welcome: s.welcome,
      noAgentText: s.noAgentText,
      strategy: s.strategy,
      queueEnabled: s.queueEnabled,
      limits: s.limits,
      language: s.language,
      texts: s.texts,
      groups: s.groups,
      bot: s.bot,
      ...(s.answerTimeoutSec !== undefined ? { answerTimeoutSec: s.answerTimeoutSec } : {}),
      ...(s.maxMissedChats !== undefined ? { maxMissedChats: s.maxMissedChats } : {}),
      ...(s.hours ? { hours: s.hours } : {}),
      ...(s.queueMaxWaitSec !== undefined ? { queueMaxWaitSec: s.queueMaxWaitSec } : {}),
      ...(s.supervisors ? { supervisors: s.supervisors } : {}),
      ...(s.canned ? { canned: s.canned } : {}),
    });
    for (const a of s.agents) {
      await store.putMembership({ shop: s.jid, agent: a.jid, maxSessions: a.maxSessions, joinedAt: now });
      if (!(await store.getAgent(a.jid))) await store.putAgent({ jid: a.jid, status: a.status });
    }
  }
  return true;
}
