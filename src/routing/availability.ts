// Who can take a new chat: QChat's rule on top of the presence the shim reports.
import type { AgentResource, AgentStatus } from '../domain/shop.js';

/** Shows that accept new chats; away/xa/dnd keep an agent present but not offered new ones. */
const TAKING_CHATS = new Set(['', 'chat']);

export interface AgentState {
  online: boolean; // at least one connected resource with available presence
  assignable: boolean; // may be offered a new chat
  keepsSessions: boolean; // online, or always-on: open sessions stay with the agent
}

export function agentState(status: AgentStatus, resources: AgentResource[]): AgentState {
  const online = resources.length > 0;
  // away: set by the server after missed chats (src/routing/answer.ts); like dnd until the agent sets its status again.
  if (status === 'dnd' || status === 'away') return { online, assignable: false, keepsSessions: online };
  if (status === 'always-on') return { online, assignable: true, keepsSessions: true };
  return { online, assignable: resources.some((r) => TAKING_CHATS.has(r.show)), keepsSessions: online };
}
