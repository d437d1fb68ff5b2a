// A shop's pure decisions (src/routing/) run by hand in unit tests: a ShopState, the ShopContext a desk would build
// for it, the agents the test puts online, the statuses the decisions set, a hand-moved clock, and every change and
// release the decisions made, in order (what the journal would hold). No desk, no store.
import type { Config } from '../../src/domain/config.js';
import type { AgentStatus, Group, Membership, Shop } from '../../src/domain/shop.js';
import { resolveTexts } from '../../src/domain/texts.js';
import { agentState } from '../../src/routing/availability.js';
import { Changes, type ShopContext } from '../../src/routing/changes.js';
import { type Change, ShopState } from '../../src/routing/state.js';
import { runTimers } from '../../src/routing/timers.js';
import { findChild, parseElement, serialize, textOf, type XmlElement } from '../../src/xmpp/xml.js';

export interface DecisionsOptions {
  /** The parsed config; its first shop is the one decided. */
  config: Config;
  /** The shop's agents: JID → maxSessions. */
  members: Record<string, number>;
  /** The shop's groups (default: the config's). */
  groups?: Group[];
  /** Agents online from the start. */
  online?: string[];
  /** The clock at the start, ms since the epoch. */
  now?: number;
}

export function handDecisions(o: DecisionsOptions) {
  const { config } = o;
  const shop: Shop = { ...config.shops[0], groups: o.groups ?? config.shops[0].groups };
  const st = new ShopState(shop.jid, shop.limits);
  const online = new Set<string>(o.online ?? []);
  const statuses = new Map<string, AgentStatus>();
  const members = new Map<string, Membership>(
    Object.entries(o.members).map(([agent, maxSessions]) => [agent, { shop: shop.jid, agent, maxSessions, joinedAt: 0 }]),
  );
  let now = o.now ?? 1_000_000;
  const status = (a: string) => statuses.get(a) ?? 'standard';
  const cx = (): ShopContext => ({
    shop,
    texts: resolveTexts('en', {}),
    members,
    agentState: (a) => agentState(status(a), online.has(a) ? [{ agent: a, resource: 'pc', node: 'n', show: '', priority: 0 }] : []),
    agentStatus: status,
    config,
    now,
    random: () => 0,
  });
  const journal: Change[] = [];
  const released: string[] = []; // visitors whose kept messages a decision asked to release
  /** One decision on the shop's state; what it changed is kept, and the statuses it set apply from now on. */
  const decide = <T>(f: (cx: ShopContext, w: Changes) => T): T => {
    const w = new Changes(st);
    const out = f(cx(), w);
    journal.push(...w.list);
    released.push(...w.releases);
    for (const s of w.statuses) statuses.set(s.agent, s.status); // as the desk does once the decision is durable
    return out;
  };
  return {
    shop,
    st,
    online,
    statuses,
    journal,
    released,
    cx,
    decide,
    /** The timer tick: what it sent, as the receivers would parse it. */
    timers: () => parsed(decide(runTimers)),
    at: (t: number) => {
      now = t;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
}

/** Stanzas as their receivers parse them (from the serialized XML). */
export const parsed = (list: XmlElement[]) => list.map((x) => parseElement(serialize(x)));
export const body = (m: XmlElement) => textOf(findChild(m, 'body')!);
/** The stanzas to one JID. */
export const to = (out: XmlElement[], jid: string) => out.filter((m) => m.attrs.to === jid);
/** The texts an agent got that are not replayed history (the heading and notices). */
export const headingsTo = (out: XmlElement[], agent: string) =>
  to(out, agent)
    .filter((m) => !findChild(m, 'delay'))
    .map(body);
/** The replayed history an agent got (marked with a delay). */
export const replayedTo = (out: XmlElement[], agent: string) => to(out, agent).filter((m) => findChild(m, 'delay'));
