// Keeps the shops this sidecar decides in line with the leases it holds (src/cluster/leases.ts):
// each round adopts the shops whose lease it took (their state from the journal), hands over
// those another live sidecar should own (after their last write is durable), and forgets at
// once those whose lease it lost. The shims are told after every change which shops are owned
// here (WatchList.owned), so they send each shop's stanzas to its owner.
import type { Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import type { Round, ShopLeases } from './leases.js';
import type { WatchList } from './watch-list.js';
import type { Log } from '../domain/log.js';

export interface OwnershipDeps {
  leases: ShopLeases;
  desk: Desk;
  directory: Directory;
  /** Told after every change of the shops held here. */
  watch: WatchList;
  log: Log;
  now?: () => number;
}

export class Ownership {
  private renewedAt: number;
  private running: Promise<void> | undefined;
  private wanted = false; // a soon() round is pending
  private stopped = false; // shutting down: no more rounds on announcements
  private readonly now: () => number;

  constructor(private readonly deps: OwnershipDeps) {
    this.now = deps.now ?? Date.now;
    this.renewedAt = this.now();
  }

  /**
   * Startup: rounds until every shop that belongs here is held, or `maxMs` passed (a previous incarnation that
   * crashed holds its leases until they expire; a live owner hands them over within a round or two).
   */
  async settle(maxMs: number, pauseMs: number): Promise<void> {
    const until = this.now() + maxMs;
    while ((await this.round()).waiting.length > 0 && this.now() < until) await new Promise((r) => setTimeout(r, pauseMs));
  }

  /** One round; rounds never overlap (a caller during a round waits for it, then runs its own). */
  async round(): Promise<Round> {
    while (this.running) await this.running;
    const run = this.run();
    this.running = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await run;
    } finally {
      this.running = undefined;
    }
  }

  /** A round as soon as possible, once however often it is asked for meanwhile (lease changes announced by others). */
  soon(): void {
    if (this.wanted || this.stopped) return;
    this.wanted = true;
    void (async () => {
      while (this.running) await this.running;
      this.wanted = false;
      if (!this.stopped) await this.round();
    })().catch((e) => this.deps.log.warn('lease round failed', { err: e }));
  }

  /** The journal refused a write for these shops: their lease is gone, so is their state here. */
  refused(shops: readonly string[]): void {
    if (this.lose(shops, 'journal write refused')) this.deps.watch.publish();
  }

  /** Forgets the shops of these this sidecar decided; true if there were any. */
  private lose(shops: readonly string[], why: string): boolean {
    const lost = shops.filter((shop) => this.deps.desk.shops.owns(shop));
    for (const shop of lost) {
      this.deps.desk.shops.drop(shop);
      this.deps.log.warn('lost the lease of a shop: another sidecar decides it now', { shop, why });
    }
    return lost.length > 0;
  }

  /** Clean shutdown: every owned shop is finished and its lease released, so standbys take over at once. */
  async handOverAll(): Promise<void> {
    this.stopped = true; // no announced round may take anything back meanwhile
    while (this.running) await this.running;
    const { desk, leases } = this.deps;
    const shops = desk.shops.owned();
    for (const shop of shops) await desk.shops.handOver(shop);
    if (shops.length > 0) this.deps.watch.publish();
    await leases.releaseAll();
  }

  private async run(): Promise<Round> {
    const { leases, desk, directory, log } = this.deps;
    let round: Round;
    try {
      round = await leases.round(directory.allShops().map((s) => s.jid));
      this.renewedAt = this.now();
      if (desk.shops.storeUnreachable) log.info('the database answers again: leases renewed', {});
      desk.shops.storeUnreachable = false;
    } catch (e) {
      // Past the lease period another sidecar may have taken the shops: stop deciding them. Visitors are told that
      // the database is out of reach, not that another sidecar decides (no one may).
      if (this.now() - this.renewedAt > leases.ttlMs) {
        desk.shops.storeUnreachable = true;
        if (desk.shops.owned().length > 0) {
          log.error('leases not renewed within their period (the database does not answer): no longer deciding any shop', { err: e });
          for (const shop of desk.shops.owned()) desk.shops.drop(shop);
          this.deps.watch.publish();
        }
      }
      throw e;
    }
    let changed = this.lose(
      desk.shops.owned().filter((shop) => !round.held.has(shop)),
      'not renewed: expired or taken over',
    );
    const handOver = new Set(round.handOver);
    for (const shop of round.held) {
      if (desk.shops.owns(shop) || handOver.has(shop)) continue;
      await desk.shops.adopt(shop);
      changed = true;
      log.info('took the lease of a shop: deciding it', { shop, live: round.live });
    }
    if (changed) this.deps.watch.publish();
    for (const shop of handOver) {
      await desk.shops.handOver(shop);
      this.deps.watch.publish(); // before the release: no stanza of it comes here once another can own it
      await leases.release([shop]);
      log.info('handed a shop over to the sidecar it belongs to', { shop, live: round.live });
    }
    return round;
  }
}
