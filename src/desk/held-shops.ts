// The shops this sidecar decides now, each with its whole state in memory. Which shops they are is
// src/cluster/'s choice (leases); here a shop's state is loaded when it is taken, waited for and let go
// when it is handed over, and forgotten when its lease is lost.
import type { Limits, Shop } from '../domain/shop.js';
import { ShopState, apply } from '../routing/state.js';
import type { Directory } from './directory.js';
import type { JournalStore, LoadedShop } from './journal.js';

export interface HeldShopsDeps {
  directory: Directory;
  store: JournalStore;
  now: () => number;
  /** A shop's journal was read: how many changes it replayed. */
  loaded: (shop: string, changes: number) => void;
  /** Whether something of the shop is still under way (a commit, kept messages on their way). */
  busy: (shop: string) => { commits: boolean; releases: boolean };
}

export class HeldShops {
  private readonly states = new Map<string, ShopState>();
  private readonly leaving = new Set<string>(); // being handed over: no new decisions
  /** Set by src/cluster/ while this sidecar holds no shop because its database does not answer (refusals say so). */
  storeUnreachable = false;

  constructor(private readonly deps: HeldShopsDeps) {}

  /** The state of a shop held here, leaving or not (the journal and effects still finish it). */
  state(shopJid: string): ShopState | undefined {
    return this.states.get(shopJid);
  }

  /** The state to decide on, or undefined when the shop is not decided here (now). */
  deciding(shopJid: string): ShopState | undefined {
    return this.leaving.has(shopJid) ? undefined : this.states.get(shopJid);
  }

  all(): IterableIterator<[string, ShopState]> {
    return this.states.entries();
  }

  /** Shops whose state this sidecar holds and decides. */
  owned(): string[] {
    return [...this.states.keys()].filter((s) => !this.leaving.has(s));
  }

  owns(shopJid: string): boolean {
    return this.states.has(shopJid) && !this.leaving.has(shopJid);
  }

  /** A shop whose lease this sidecar just took: its state from the journal (the previous owner's last write included). */
  async adopt(shopJid: string): Promise<void> {
    const shop = this.deps.directory.shop(shopJid);
    if (!shop || this.states.has(shopJid)) return;
    this.states.set(shopJid, await this.load(shop));
  }

  /**
   * Gives a shop up cleanly: no new decisions, then wait until everything decided is durable and no kept messages
   * are on their way; then the state goes (the caller releases the lease after this).
   */
  async handOver(shopJid: string): Promise<void> {
    if (!this.states.has(shopJid)) return;
    this.leaving.add(shopJid);
    // A release waiting on a slow shim is not waited for long: its batch is deleted only once acknowledged, so the
    // next owner sends it again (at least once; body ids let clients spot the rare duplicate).
    const until = Date.now() + 2000;
    for (;;) {
      const { commits, releases } = this.deps.busy(shopJid);
      if (!commits && !(releases && Date.now() < until)) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    this.states.delete(shopJid);
    this.leaving.delete(shopJid);
  }

  /** A lease lost (expired, or taken by another sidecar): the state here may be stale, and its writes are fenced off. */
  drop(shopJid: string): void {
    this.states.delete(shopJid);
  }

  /** The directory changed: held shops take their new limits; a shop removed from it is no longer decided. */
  refresh(): void {
    for (const [jid, st] of this.states) {
      const shop = this.deps.directory.shop(jid);
      if (!shop) this.states.delete(jid);
      else if (JSON.stringify(st.limits) !== JSON.stringify(shop.limits)) st.setLimits(shop.limits);
    }
  }

  /** A deleted shop (the admin API checked it has no sessions or queue): its journal goes too. */
  async forget(shopJid: string): Promise<void> {
    this.states.delete(shopJid);
    await this.deps.store.forget(shopJid);
  }

  private async load(shop: Shop): Promise<ShopState> {
    const loaded = await this.deps.store.load(shop.jid);
    const st = restore(shop.jid, shop.limits, loaded);
    st.purgeSticky(this.deps.now());
    this.deps.loaded(
      shop.jid,
      loaded.batches.reduce((n, b) => n + b.length, 0),
    );
    return st;
  }
}

/** A shop's state from its snapshot and the journal written after it. */
export function restore(shop: string, limits: Limits, loaded: LoadedShop): ShopState {
  const st = loaded.snapshot ? ShopState.fromParts(shop, limits, loaded.snapshot) : new ShopState(shop, limits);
  for (const batch of loaded.batches) for (const c of batch) apply(st, c);
  return st;
}
