// What the sidecar keeps: shops, agents, sessions, the waiting queue, held messages.
// Every implementation (memory for tests, SQL for PGlite / PostgreSQL) behaves the same.

export type Strategy = 'sticky' | 'least-busy' | 'round-robin' | 'random';
export const STRATEGIES: readonly Strategy[] = ['sticky', 'least-busy', 'round-robin', 'random'];
/** QChat's seat service status: standard needs an online client, dnd is never assigned, always-on always is. */
export type AgentStatus = 'standard' | 'dnd' | 'always-on';
export const AGENT_STATUSES: readonly AgentStatus[] = ['standard', 'dnd', 'always-on'];

export interface Shop {
  jid: string; // bare JID of the shop account
  name: string;
  welcome: string;
  noAgentText: string;
  strategy: Strategy;
  queueEnabled: boolean;
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

export interface Session {
  visitor: string;
  shop: string;
  agent: string;
  startedAt: number;
  lastVisitorAt: number; // 0 = never
  lastAgentAt: number;
  /** When the agent was last reminded of an unanswered visitor (0 = not yet for the current message). */
  remindedAt: number;
  /** When the agent went offline with this session open (0 = agent online). */
  orphanedAt: number;
}

export interface QueueEntry {
  visitor: string;
  shop: string;
  enqueuedAt: number;
}

export interface StoredStanza {
  at: number;
  xml: string;
}

/** Operations on one shop, run under that shop's lock (a database transaction for SQL stores). */
export interface ShopTx {
  getSession(visitor: string): Promise<Session | undefined>;
  putSession(session: Session): Promise<void>;
  deleteSession(visitor: string): Promise<void>;
  sessions(): Promise<Session[]>;

  /** Oldest first. */
  queue(): Promise<QueueEntry[]>;
  /** Adds the visitor at the end unless already queued. */
  enqueue(visitor: string, at: number): Promise<void>;
  dequeue(visitor: string): Promise<void>;

  /** Messages kept while the visitor waits, delivered in order on assignment. */
  hold(visitor: string, stanza: StoredStanza): Promise<void>;
  takeHeld(visitor: string): Promise<StoredStanza[]>;

  /** Last assignment time per agent of this shop (round-robin). */
  lastAssigned(): Promise<Map<string, number>>;
  markAssigned(agent: string, at: number): Promise<void>;

  /** Sticky hint: the agent a returning visitor had, until a time. */
  stickyAgent(visitor: string, now: number): Promise<string | undefined>;
  setSticky(visitor: string, agent: string, until: number): Promise<void>;

  /** Recent relayed messages of a session, for transfers. Keeps the newest `keep`. */
  appendHistory(visitor: string, stanza: StoredStanza, keep: number): Promise<void>;
  history(visitor: string): Promise<StoredStanza[]>;
  clearHistory(visitor: string): Promise<void>;
}

export interface Store {
  withShop<T>(shop: string, work: (tx: ShopTx) => Promise<T>): Promise<T>;

  listShops(): Promise<Shop[]>;
  getShop(jid: string): Promise<Shop | undefined>;
  putShop(shop: Shop): Promise<void>;
  deleteShop(jid: string): Promise<void>;

  memberships(): Promise<Membership[]>;
  putMembership(m: Membership): Promise<void>;
  deleteMembership(shop: string, agent: string): Promise<void>;

  getAgent(jid: string): Promise<Agent | undefined>;
  putAgent(agent: Agent): Promise<void>;

  setResource(r: AgentResource): Promise<void>;
  removeResource(agent: string, resource: string): Promise<void>;
  /** Forget what a node reported (its stream reopened: it reports again). */
  clearNode(node: string): Promise<void>;
  resources(): Promise<AgentResource[]>;

  /** Every session of every shop (timers, admin listing). */
  allSessions(): Promise<Session[]>;

  close(): Promise<void>;
}
