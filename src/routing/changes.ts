// The writer a decision records its changes through, and what a decision may read besides the state.
import type { Config } from '../domain/config.js';
import { type Membership, type Shop } from '../domain/shop.js';
import type { AgentState } from './availability.js';
import { type BotAsk } from './bot.js';
import { apply, type Change, type ShopState, type Undo } from './state.js';
import { type Texts } from '../domain/texts.js';

/** Records a decision's changes, applying each at once, and can take them all back. */
export class Changes {
  readonly list: Change[] = [];
  readonly undos: Undo[] = [];
  /** Visitors whose kept messages are to be released to their (new) agent once this is durable. */
  readonly releases = new Set<string>();
  /** Visitor messages for the bot, asked by the desk once this is durable. */
  readonly asks: BotAsk[] = [];

  constructor(readonly state: ShopState) {}

  do(c: Change): void {
    this.list.push(c);
    this.undos.push(apply(this.state, c));
  }

  revert(): void {
    for (let i = this.undos.length - 1; i >= 0; i--) this.undos[i]();
    this.list.length = 0;
    this.undos.length = 0;
    this.releases.clear();
    this.asks.length = 0;
  }
}

/** What a decision may read besides the shop's state: settings, availability, the clock. */
export interface ShopContext {
  shop: Shop;
  texts: Texts; // the shop's, resolved
  members: ReadonlyMap<string, Membership>; // by agent
  agentState(agent: string): AgentState;
  config: Pick<Config, 'systemJid' | 'timers' | 'archive'>;
  now: number;
  random: () => number;
}
