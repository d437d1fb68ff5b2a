// What the sidecar keeps outside the journal: shops, agents, memberships (admin data,
// read into memory by the Directory) and the agents' online resources reported by the
// shims. Memory for tests; SQL (PGlite / PostgreSQL) in src/storage/sql-store.ts behaves the same.
import type { OpeningHours } from './hours.js';
import type { Canned } from './canned.js';
import type { Language, Texts } from './texts.js';

export type Strategy = 'sticky' | 'least-busy' | 'round-robin' | 'random';
export const STRATEGIES: readonly Strategy[] = ['sticky', 'least-busy', 'round-robin', 'random'];
/**
 * QChat's seat service status: standard needs an online client, dnd is never assigned, always-on always is. `away` is
 * set by the server only, after an agent missed `maxMissedChats` chats in a row: like dnd until the agent sets its
 * status again.
 */
export type AgentStatus = 'standard' | 'dnd' | 'always-on' | 'away';
/** The statuses an agent (`/status`) or an admin may set. */
export const AGENT_STATUSES: readonly AgentStatus[] = ['standard', 'dnd', 'always-on'];
/** Every status an agent may have: the settable ones and the server's `away`. */
export const ALL_AGENT_STATUSES: readonly AgentStatus[] = [...AGENT_STATUSES, 'away'];

export const DEFAULT_LIMITS: Limits = {
  queueMax: 1000,
  keptPerVisitor: 100,
  keptBytesPerVisitor: 1024 * 1024,
  historyPerSession: 20,
  stickyMax: 100_000,
  transcriptPerSession: 1000,
  outboxMax: 10_000,
};
export const LIMIT_RANGES: Record<keyof Limits, [number, number]> = {
  queueMax: [1, 1_000_000],
  keptPerVisitor: [1, 10_000],
  keptBytesPerVisitor: [1024, 64 * 1024 * 1024],
  historyPerSession: [1, 1000],
  stickyMax: [1, 10_000_000],
  transcriptPerSession: [10, 100_000],
  outboxMax: [1, 1_000_000],
};

/** Who answers first (QChat's robot strategies): no bot, the bot first, or the bot only when no human can take it. */
export type BotMode = 'none' | 'bot-first' | 'human-first';
export const BOT_MODES: readonly BotMode[] = ['none', 'bot-first', 'human-first'];

/** The shop's bot: an HTTP webhook (contract in src/bot/webhook.ts and docs/behaviour.md). */
export interface BotConfig {
  mode: BotMode;
  url?: string;
  timeoutMs: number; // per attempt
  retries: number; // further attempts after a failed one
}
export const DEFAULT_BOT: BotConfig = { mode: 'none', timeoutMs: 3000, retries: 1 };

/** An agent group of a shop (QChat's seat_group with its seat and product mappings). */
export interface Group {
  name: string;
  isDefault: boolean; // the shop's default group: consults naming no mapped product go here
  agents: string[];
  products: string[]; // product ids routed to this group
  strategy?: Strategy; // else the shop's
  maxSessions?: number; // per agent, sessions of this group (besides the agent's own shop capacity)
  bot?: BotMode; // else the shop's
  hours?: OpeningHours; // else the shop's
  queueMaxWaitSec?: number; // else the shop's (0: no limit for this group)
  answerTimeoutSec?: number; // else the shop's (0: off for this group)
  canned?: Canned; // canned replies of its sessions, over the shop's (src/domain/canned.ts)
}

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
  groups: Group[];
  bot: BotConfig;
  /** When visitors are served (src/domain/hours.ts); absent: always. Outside them messages are kept as left messages. */
  hours?: OpeningHours;
  /** A visitor waiting longer than this leaves the queue, its messages kept as a left message (absent or 0: no limit). */
  queueMaxWaitSec?: number;
  /** Answer or move on: an assigned agent that sends nothing this long loses the visitor to the next agent (absent or 0: off). */
  answerTimeoutSec?: number;
  /** After this many chats missed in a row the agent is set away (absent or 0: never). */
  maxMissedChats?: number;
  /** Accounts that may watch the shop's sessions, whisper to their agents and take them over (not necessarily agents). */
  supervisors?: string[];
  /** Canned replies by name (src/domain/canned.ts): `#name` from an agent sends the text to its visitor. */
  canned?: Canned;
  /** Its own webhook, set through the admin API, over the config's events (false: none for it); absent: the config's. */
  events?: ShopWebhook | false;
}

/** A shop's own webhook as stored (the secret signs each request; it is never answered nor logged). */
export interface ShopWebhook {
  url: string;
  secret: string;
  messages?: boolean; // absent: the config's events.messages
  timeoutMs?: number; // absent: the config's events.timeoutMs
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

/** The bounds a shop's state keeps (per-shop config, with defaults in config.ts). */
export interface Limits {
  queueMax: number; // visitors waiting
  keptPerVisitor: number; // messages kept while a visitor waits
  keptBytesPerVisitor: number; // and their size
  historyPerSession: number; // relayed messages kept per session, replayed on transfer
  stickyMax: number; // returning visitors remembered for the sticky strategy
  transcriptPerSession: number; // lines of an open session's transcript kept for the archive (oldest dropped)
  outboxMax: number; // webhook events not yet delivered (when full, the oldest is dropped and counted)
}
