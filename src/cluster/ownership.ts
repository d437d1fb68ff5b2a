// Keeps the shops this sidecar decides in line with the leases it holds (src/cluster/leases.ts).
// Two paths that never wait for each other:
// - renewal (every ttl/5): heartbeat and renew the leases, forget at once the shops whose lease
//   was lost, and queue what else the round found;
// - work (one at a time, in order): adopt the shops whose lease was taken (their state from the
//   journal, which may be long) and hand over those another live sidecar should own (after their
//   last write is durable).
// So a long adoption never makes a renewal late. And when renewals fail or hang (a database that
// does not answer), the shops are given up before their leases can expire: nobody else may take
// them before then, so there are never two deciders.
// The shims are told after every change which shops are owned here, and at which lease epoch
// (WatchList), so they send each shop's stanzas to its owner.
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

/** The shops go when no renewal has succeeded for this share of the lease period (so well before it ends). */
const GIVE_UP_SHARE = 0.8;

export class Ownership {
  private renewedAt: number; // when the last renewal that succeeded started (the lease runs from at least then)
  private renewing: Promise<void> | undefined;
  private work: Promise<void> = Promise.resolve();
  private latest: Round | undefined; // the last renewal's view: what work must still agree with
  private wanted = false; // a soon() round is pending
  private stopped = false; // shutting down: no more rounds on announcements
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly deps: OwnershipDeps) {
    this.now = deps.now ?? Date.now;
    this.renewedAt = this.now();
  }

  /** Renewals every `everyMs`, and the give-up check with each (even while a renewal hangs). */
  start(everyMs: number): void {
    this.timer = setInterval(() => {
      this.giveUpIfLate();
      if (!this.renewing) void this.renew().catch((e) => this.deps.log.warn('lease round failed', { err: e }));
    }, everyMs);
  }

  /** Stops the renewals (tests; shutdown goes through handOverAll). */
  stop(): void {
    clearInterval(this.timer);
  }

  /** The lease epoch of a held shop, told to the shims with it. */
  epochOf = (shop: string): number | undefined => this.latest?.epochs.get(shop);

  /**
   * Startup: rounds until every shop that belongs here is held, or `maxMs` passed (a previous incarnation that
   * crashed holds its leases until they expire; a live owner hands them over within a round or two).
   */
  async settle(maxMs: number, pauseMs: number): Promise<void> {
    const until = this.now() + maxMs;
    while ((await this.round()).waiting.length > 0 && this.now() < until) await new Promise((r) => setTimeout(r, pauseMs));
  }

  /** One renewal and the work it found, done (startup, tests, announcements). */
  async round(): Promise<Round> {
    const round = await this.renew();
    await this.work;
    return round;
  }

  /** A round as soon as possible, once however often it is asked for meanwhile (lease changes announced by others). */
  soon(): void {
    if (this.wanted || this.stopped) return;
    this.wanted = true;
    void (async () => {
      while (this.renewing) await this.renewing;
      this.wanted = false;
      if (!this.stopped) await this.round();
    })().catch((e) => this.deps.log.warn('lease round failed', { err: e }));
  }

  /** The journal refused a write for these shops: their lease is gone, so is their state here. */
  refused(shops: readonly string[]): void {
    if (this.lose(shops, 'journal write refused')) this.deps.watch.publish();
  }

  /** Clean shutdown: every owned shop is finished and its lease released, so standbys take over at once. */
  async handOverAll(): Promise<void> {
    this.stopped = true; // no announced round may take anything back meanwhile
    clearInterval(this.timer);
    while (this.renewing) await this.renewing;
    await this.work;
    const { desk, leases } = this.deps;
    const shops = desk.shops.owned();
    for (const shop of shops) await desk.shops.handOver(shop);
    if (shops.length > 0) this.deps.watch.publish();
    await leases.releaseAll();
  }

  /** Renewals never overlap (a caller during one waits for it, then runs its own). */
  private async renew(): Promise<Round> {
    while (this.renewing) await this.renewing;
    const run = this.renewOnce();
    this.renewing = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await run;
    } finally {
      this.renewing = undefined;
    }
  }

  private async renewOnce(): Promise<Round> {
    const { leases, desk, directory, log } = this.deps;
    const startedAt = this.now();
    let round: Round;
    try {
      round = await leases.round(directory.allShops().map((s) => s.jid));
    } catch (e) {
      this.giveUpIfLate();
      throw e;
    }
    // Renewed, but so late that the shops may be given up again at once: the next round takes them back.
    const late = this.now() - startedAt > leases.ttlMs * GIVE_UP_SHARE;
    if (late) log.warn('a lease round took most of the lease period', { ms: this.now() - startedAt });
    this.renewedAt = startedAt;
    if (desk.shops.storeUnreachable) log.info('the database answers again: leases renewed', {});
    desk.shops.storeUnreachable = false;
    this.latest = round;
    if (
      this.lose(
        desk.shops.owned().filter((shop) => !round.held.has(shop)),
        'not renewed: expired or taken over',
      )
    )
      this.deps.watch.publish();
    const toAdopt = [...round.held].filter((shop) => !desk.shops.owns(shop) && !round.handOver.includes(shop));
    if (late) toAdopt.length = 0;
    if (toAdopt.length > 0 || round.handOver.length > 0) this.queue(() => this.apply(toAdopt, round.handOver));
    return round;
  }

  /**
   * No renewal succeeded for most of the lease period: another sidecar may take the shops once it ends, so stop
   * deciding them now. Visitors are told the database is out of reach, not that another sidecar decides (no one may).
   */
  private giveUpIfLate(): void {
    const { leases, desk, log } = this.deps;
    if (this.now() - this.renewedAt <= leases.ttlMs * GIVE_UP_SHARE) return;
    desk.shops.storeUnreachable = true;
    if (desk.shops.owned().length === 0) return;
    log.error('leases not renewed in time (the database does not answer): no longer deciding any shop, before the leases end', {
      sinceRenewalMs: this.now() - this.renewedAt,
      ttlMs: leases.ttlMs,
    });
    for (const shop of desk.shops.owned()) desk.shops.drop(shop);
    this.deps.watch.publish();
  }

  private queue(fn: () => Promise<void>): void {
    this.work = this.work.then(fn).catch((e) => this.deps.log.warn('adopting or handing over shops failed', { err: e }));
  }

  /** The work a renewal found, checked against the latest renewal (which may have run meanwhile). */
  private async apply(adopt: readonly string[], handOver: readonly string[]): Promise<void> {
    const { desk, leases, log } = this.deps;
    let changed = false;
    for (const shop of adopt) {
      if (this.stopped || desk.shops.owns(shop) || !this.stillHeld(shop) || this.latest?.handOver.includes(shop)) continue;
      await desk.shops.adopt(shop);
      if (!this.stillHeld(shop)) {
        desk.shops.drop(shop); // lost while its journal was read
        continue;
      }
      changed = true;
      log.info('took the lease of a shop: deciding it', { shop, epoch: this.epochOf(shop), live: this.latest?.live });
    }
    if (changed) this.deps.watch.publish();
    for (const shop of handOver) {
      if (this.stopped || !this.stillHeld(shop) || !this.latest?.handOver.includes(shop)) continue;
      await desk.shops.handOver(shop);
      this.deps.watch.publish(); // before the release: no stanza of it comes here once another can own it
      await leases.release([shop]);
      this.latest?.held.delete(shop);
      this.latest?.epochs.delete(shop);
      log.info('handed a shop over to the sidecar it belongs to', { shop, live: this.latest?.live });
    }
  }

  private stillHeld(shop: string): boolean {
    return this.latest?.held.has(shop) ?? false;
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
}
