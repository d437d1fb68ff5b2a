// Choosing an agent among those free to take a chat: pickAgent is pure over the facts; chooseAgent gathers them.
import { groupAllows, groupsOf, strategyOf } from './groups.js';
import type { ShopState } from './state.js';
import type { Strategy } from '../domain/shop.js';
import type { ShopContext } from './changes.js';

export interface Candidate {
  agent: string;
  load: number; // open sessions in this shop
  /** Last time this agent got a chat of this shop; a newcomer counts from when it joined, never from 0. */
  lastAssignedAt: number;
}

export function pickAgent(
  strategy: Strategy,
  candidates: Candidate[],
  sticky: string | undefined,
  random: () => number = Math.random,
): string | undefined {
  if (candidates.length === 0) return undefined;
  if (strategy === 'sticky' && sticky && candidates.some((c) => c.agent === sticky)) return sticky;
  if (strategy === 'random') return candidates[Math.floor(random() * candidates.length)].agent;
  const byTurn = (a: Candidate, b: Candidate) => a.lastAssignedAt - b.lastAssignedAt || (a.agent < b.agent ? -1 : 1);
  if (strategy === 'round-robin') return [...candidates].sort(byTurn)[0].agent;
  // least-busy (and sticky's fallback): fewest open chats, ties go to whoever waited longest for one.
  return [...candidates].sort((a, b) => a.load - b.load || byTurn(a, b))[0].agent;
}

export function chooseAgent(cx: ShopContext, st: ShopState, visitor: string, exclude?: string, key = ''): string | undefined {
  const groups = groupsOf(cx.shop, key);
  const candidates = [];
  for (const m of cx.members.values()) {
    if (m.agent === exclude || !cx.agentState(m.agent).assignable) continue;
    const load = st.load(m.agent);
    if (load >= m.maxSessions || !groupAllows(groups, st, m.agent, key)) continue;
    candidates.push({ agent: m.agent, load, lastAssignedAt: st.lastAssigned.get(m.agent) ?? m.joinedAt });
  }
  const strategy = strategyOf(cx.shop, groups);
  const sticky = strategy === 'sticky' ? st.stickyAgent(visitor, cx.now) : undefined;
  return pickAgent(strategy, candidates, sticky, cx.random);
}
