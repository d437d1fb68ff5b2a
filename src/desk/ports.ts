// What the desk depends on, as interfaces, implemented further out: shops, agents and presence (Store) and
// closed sessions (ArchiveStore) by src/storage/, in memory and on SQL; the bot (AskBot) by src/bot/webhook.ts;
// the way to the shims (Outbox) by src/grpc/link.ts, what it finished (DeskMetrics) by src/admin/metrics.ts. The
// journal's port is in journal.ts beside the Journal.
import type { Shop, Membership, Agent, AgentResource } from '../domain/shop.js';
import type { ArchiveRecord, Rating, ArchiveQuery, ArchiveStats } from '../domain/archive.js';
import type { Line } from '../domain/archive.js';
import type { BotConfig } from '../domain/shop.js';
import type { EventHook } from '../domain/config.js';
import type { XmlElement } from '../xmpp/xml.js';

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

export interface ArchiveStore {
  /** Idempotent: a record written again (a flush repeated after a restart) replaces itself, its rating kept. */
  put(records: ArchiveRecord[]): Promise<void>;
  rate(ratings: Rating[]): Promise<void>;
  search(q: ArchiveQuery): Promise<ArchiveRecord[]>;
  get(id: string): Promise<ArchiveRecord | undefined>;
  /** Deletes sessions that ended before `before`; returns how many. */
  purge(before: number): Promise<number>;
  /** Erasure: deletes every session of the visitor, in any shop; returns how many. */
  forgetVisitor(visitor: string): Promise<number>;
  stats(q: Pick<ArchiveQuery, 'shop' | 'from' | 'to' | 'tag'>): Promise<ArchiveStats[]>;
}

/** What ejabberd removed of a user on its own storage, through a shim (erasure). */
export interface ErasedInEjabberd {
  /** The node that did it, and what: offline messages and the MAM archive (when those modules run on the user's vhost), the account. */
  node: string;
  offline: boolean;
  mam: boolean;
  account: boolean;
}

/** Asks ejabberd (any shim: its storage is the cluster's) to erase a user; `account`: its account goes too. */
export interface UserEraser {
  eraseUser(jid: string, account: boolean): Promise<ErasedInEjabberd>;
}

/** What the bot is asked: the visitor's message and the conversation so far (the webhook's JSON body). */
export interface BotRequest {
  shop: string;
  visitor: string;
  id: string;
  text: string;
  msgType: string;
  history: Line[];
}

/** The bot's answer: a text for the visitor, a hand-over to a human, or nothing to say. */
export interface BotAnswer {
  text?: string;
  handover?: boolean;
}

/** Asks a shop's bot; rejects when it does not answer (the visitor then goes to a human). */
export type AskBot = (bot: BotConfig, req: BotRequest) => Promise<BotAnswer>;

/** Where stanzas the sidecar sends on its own go: the shims (ShimLink), or a test's list. */
export interface Outbox {
  /** Fire and forget. */
  send(stanzas: XmlElement[]): void;
  /** Resolves once ejabberd has them; rejects if no shim took them. `keys`: one per stanza, or none (see link.ts). */
  deliver(stanzas: string[], keys?: string[]): Promise<void>;
}

/**
 * What the desk tells the metrics, once a live decision's changes are durable: never on journal replay (a restart
 * does not count a close again) and never for a decision taken back.
 */
export interface DeskMetrics {
  /** A session closed: its record as the archive will have it. */
  sessionClosed(record: ArchiveRecord): void;
  /** A visitor rated a closed session of the shop 1..5. */
  rated(shop: string, score: number): void;
  /** Chats of the shop moved on because their agent did not answer in time (answer or move on). */
  missedChats(shop: string, n: number): void;
  /** A visitor's wait of the shop's group key ended without an agent (closed, timeout, left), after waitMs. */
  queueAbandoned?(shop: string, group: string, reason: 'closed' | 'timeout' | 'left', waitMs: number): void;
}

/** One webhook event as it is POSTed: the same body and id on every attempt, by any sidecar, after any restart. */
export interface EventDelivery {
  /** The idempotency key (X-Consult-Event-Id): `<shop>/<seq>`. */
  id: string;
  /** The JSON body. */
  body: string;
}

/**
 * Sends one event to a webhook (src/bot/event-hook.ts): resolves on a 2xx answer, rejects on anything else, on no
 * answer within the hook's timeoutMs, or once `signal` aborts (shutdown).
 */
export type PostEvent = (hook: EventHook, delivery: EventDelivery, signal: AbortSignal) => Promise<void>;

/** What the desk tells the metrics of a shop's events (src/admin/outcome-metrics.ts). */
export interface EventMetrics {
  delivered(shop: string): void;
  /** An attempt that did not get a 2xx (retried after a backoff). */
  failed(shop: string): void;
  /** Events dropped undelivered: the shop's outbox was full (limits.outboxMax). */
  dropped(shop: string, n: number): void;
}

export const NO_EVENT_METRICS: EventMetrics = { delivered: () => {}, failed: () => {}, dropped: () => {} };

/** No metrics (tests, tools). */
export const NO_DESK_METRICS: DeskMetrics = { sessionClosed: () => {}, rated: () => {}, missedChats: () => {} };
