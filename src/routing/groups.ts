// Skill groups: which agents a consult may go to. A consult names a product in its channelid
// (`{"cn":"consult","d":"send","usrType":"usr","pid":"<product>"}`); it goes to the groups mapped to
// that product, else the shop's default group, else any agent of the shop. The result is a
// group key: the chosen group names comma-joined, '' for any agent. Queue and capacity use the key.
import type { BotMode, Group, Shop, Strategy } from '../domain/shop.js';
import { channelFields } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import { BOT, type ShopState } from './state.js';

/** The product a visitor's stanza names (channelid's `pid`), if any. */
export function productOf(stanza: XmlElement): string | undefined {
  const pid = channelFields(stanza)?.pid;
  return typeof pid === 'string' && pid ? pid : typeof pid === 'number' ? String(pid) : undefined;
}

export function groupsOf(shop: Shop, key: string | undefined): Group[] {
  if (!key) return [];
  const names = key.split(',');
  return shop.groups.filter((g) => names.includes(g.name));
}

/**
 * Where a new consult goes. A group counts only while one of its agents can take chats at all (online, not dnd):
 * a product group nobody staffs falls back to the default group, and that to the whole shop.
 */
export function routeKey(shop: Shop, product: string | undefined, assignable: (agent: string) => boolean): string {
  const staffed = (gs: Group[]) => gs.some((g) => g.agents.some(assignable));
  const mapped = product ? shop.groups.filter((g) => g.products.includes(product)) : [];
  if (mapped.length && staffed(mapped)) return mapped.map((g) => g.name).join(',');
  const dflt = shop.groups.filter((g) => g.isDefault);
  if (dflt.length && staffed(dflt)) return dflt[0].name;
  return '';
}

/** May this agent take a chat for this key, given its sessions of the key so far? */
export function groupAllows(groups: Group[], st: ShopState, agent: string, key: string): boolean {
  if (groups.length === 0) return true;
  const mine = groups.filter((g) => g.agents.includes(agent));
  if (mine.length === 0) return false;
  const caps = mine.map((g) => g.maxSessions).filter((n): n is number => n !== undefined);
  if (caps.length === 0) return true;
  let load = 0;
  for (const v of st.byAgent.get(agent) ?? []) if (st.sessions.get(v)?.group === key) load++;
  return load < Math.max(...caps);
}

export function strategyOf(shop: Shop, groups: Group[]): Strategy {
  return groups.find((g) => g.strategy)?.strategy ?? shop.strategy;
}

export function botModeOf(shop: Shop, key: string): BotMode {
  if (!shop.bot.url) return 'none';
  return groupsOf(shop, key).find((g) => g.bot)?.bot ?? shop.bot.mode;
}

/** The answer timeout of a session routed to `key`, in seconds: its first group that sets one, else the shop's; 0: off. */
export function answerTimeoutOf(shop: Shop, key: string): number {
  return groupsOf(shop, key).find((g) => g.answerTimeoutSec !== undefined)?.answerTimeoutSec ?? shop.answerTimeoutSec ?? 0;
}

/** Whether an agent given a session of `key` now starts an answer clock (never the bot), as a change's field. */
export function answerClock(shop: Shop, agent: string, key: string): { clock?: true } {
  return agent !== BOT && answerTimeoutOf(shop, key) > 0 ? { clock: true } : {};
}
