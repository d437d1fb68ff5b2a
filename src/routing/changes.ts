// The writer a decision records its changes through, and what a decision may read besides the state.
import type { Config } from '../domain/config.js';
import type { AgentStatus, Membership, Shop } from '../domain/shop.js';
import type { AgentState } from './availability.js';
import { apply, type Change, type ShopEvent, type ShopState, type Undo } from './state.js';
import type { Texts } from '../domain/texts.js';

/** Records a decision's changes, applying each at once, and can take them all back. */
export class Changes {
  readonly list: Change[] = [];
  readonly undos: Undo[] = [];
  /** Visitors whose kept messages are to be released to their (new) agent once this is durable. */
  readonly releases = new Set<string>();
  /** Visitor messages for the bot, asked by the desk once this is durable. */
  readonly asks: BotAsk[] = [];
  /** Agent statuses to set once this is durable (a status spans all of an agent's shops). */
  readonly statuses: { agent: string; status: AgentStatus }[] = [];
  /** Archive look-ups (an agent's `/history`) the desk answers once this is durable. */
  readonly lookups: HistoryLookup[] = [];

  /** `events`: the webhook events of a change, read before it applies; each becomes an `emit` right behind it. */
  constructor(
    readonly state: ShopState,
    private readonly events?: (st: ShopState, c: Change) => ShopEvent[],
  ) {}

  do(c: Change): void {
    const events = this.events && c.op !== 'emit' ? this.events(this.state, c) : [];
    this.list.push(c);
    this.undos.push(apply(this.state, c));
    for (const e of events) this.do({ op: 'emit', e });
  }

  revert(): void {
    for (let i = this.undos.length - 1; i >= 0; i--) this.undos[i]();
    this.list.length = 0;
    this.undos.length = 0;
    this.releases.clear();
    this.asks.length = 0;
    this.statuses.length = 0;
    this.lookups.length = 0;
  }
}

/** What a decision may read besides the shop's state: settings, availability, the clock. */
export interface ShopContext {
  shop: Shop;
  texts: Texts; // the shop's, resolved
  members: ReadonlyMap<string, Membership>; // by agent
  agentState(agent: string): AgentState;
  agentStatus(agent: string): AgentStatus;
  config: Pick<Config, 'systemJid' | 'timers' | 'archive' | 'maxStanzaBytes'>;
  now: number;
  random: () => number;
}

/** A visitor message the bot is to answer. */
export interface BotAsk {
  visitor: string;
  id: string; // the body id: an idempotency key for retries
  text: string;
  msgType: string;
}

/** An agent asked for a visitor's earlier sessions of the shop (src/routing/history.ts). */
export interface HistoryLookup {
  agent: string;
  visitor: string;
  at: number; // when it was asked: the answer's time
}
