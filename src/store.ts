// What the sidecar keeps outside the journal: shops, agents, memberships (admin data,
// read into memory by the Directory) and the agents' online resources reported by the
// shims. Memory for tests; SQL (PGlite / PostgreSQL) in src/sql-store.ts behaves the same.
import type { Limits } from './routing/state.js';
import type { Language, Texts } from './routing/texts.js';

export type Strategy = 'sticky' | 'least-busy' | 'round-robin' | 'random';
export const STRATEGIES: readonly Strategy[] = ['sticky', 'least-busy', 'round-robin', 'random'];
/** QChat's seat service status: standard needs an online client, dnd is never assigned, always-on always is. */
export type AgentStatus = 'standard' | 'dnd' | 'always-on';
export const AGENT_STATUSES: readonly AgentStatus[] = ['standard', 'dnd', 'always-on'];

export const DEFAULT_LIMITS: Limits = {
  queueMax: 1000,
  keptPerVisitor: 100,
  keptBytesPerVisitor: 1024 * 1024,
  historyPerSession: 20,
  stickyMax: 100_000,
};
export const LIMIT_RANGES: Record<keyof Limits, [number, number]> = {
  queueMax: [1, 1_000_000],
  keptPerVisitor: [1, 10_000],
  keptBytesPerVisitor: [1024, 64 * 1024 * 1024],
  historyPerSession: [1, 1000],
  stickyMax: [1, 10_000_000],
};

export interface Shop {
  jid: string; // bare JID of the shop account
  name: string;
  welcome: string;
  noAgentText: string;
  strategy: Strategy;
  queueEnabled: boolean;
  limits: Limits;
  /** Which default texts the shop's visitors and agents read, and its own overrides of them. */
  language: Language;
  texts: Partial<Texts>;
}

export interface Membership {
  shop: string;
  agent: string;
  maxSessions: number;
  joinedAt: number; // ms; round-robin treats a newcomer as served at this time, not never
}

export interface Agent {
  jid: string;
  status: AgentStatus;
}

/** An online client resource of an agent, as reported by the shim. */
export interface AgentResource {
  agent: string;
  resource: string;
  node: string; // ejabberd node that reported it
  show: string; // '' (available), chat, away, xa, dnd
  priority: number;
}

export interface Store {
  listShops(): Promise<Shop[]>;
  getShop(jid: string): Promise<Shop | undefined>;
  putShop(shop: Shop): Promise<void>;
  deleteShop(jid: string): Promise<void>;

  memberships(): Promise<Membership[]>;
  putMembership(m: Membership): Promise<void>;
  deleteMembership(shop: string, agent: string): Promise<void>;

  getAgent(jid: string): Promise<Agent | undefined>;
  listAgents(): Promise<Agent[]>;
  putAgent(agent: Agent): Promise<void>;

  setResource(r: AgentResource): Promise<void>;
  removeResource(agent: string, resource: string): Promise<void>;
  /** Forget what a node reported (its stream reopened: it reports again). */
  clearNode(node: string): Promise<void>;
  resources(): Promise<AgentResource[]>;

  close(): Promise<void>;
}
