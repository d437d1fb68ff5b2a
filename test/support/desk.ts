// A Desk on a real store (memory, PGlite or a private PostgreSQL), driven through the gRPC
// handlers, with a hand-moved clock. Every behaviour suite runs on all three backends.
import type { Config } from '../../src/domain/config.js';
import { Desk, type DeskDeps } from '../../src/desk/desk.js';
import type { DeskMetrics, EventMetrics, Outbox, PostEvent } from '../../src/desk/ports.js';
import { Directory, seedStore } from '../../src/desk/directory.js';
import { type FilterRequest, Hook, SessionEvent_Kind as Kind, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { ShimLink } from '../../src/grpc/link.js';
import { leaseOwners } from '../../src/admin/http.js';
import { stanzaFilterHandlers, type FilterHooks } from '../../src/grpc/server.js';
import { MemoryArchive } from '../../src/storage/memory-archive.js';
import { MemoryAudit } from '../../src/storage/memory-audit.js';
import { MemoryJournal } from '../../src/storage/memory-journal.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { SoleOwner } from '../../src/cluster/leases.js';
import { askBot } from '../../src/bot/webhook.js';
import { WatchList } from '../../src/cluster/watch-list.js';
import { Ownership } from '../../src/cluster/ownership.js';
import { Presence } from '../../src/desk/presence.js';
import { pgDriver, pgliteDriver, type Driver } from '../../src/storage/driver.js';
import { storesOn, type Stores } from '../../src/storage/open.js';
import { LeaseLost } from '../../src/storage/sql-journal.js';
import type { JournalStore } from '../../src/desk/journal.js';
import { parseElement, serialize, type XmlElement } from '../../src/xmpp/xml.js';
import { startPostgres, type Postgres } from './postgres.js';
import { silent } from '../../src/domain/log.js';

export type Backend = 'memory' | 'pglite' | 'postgres';
export const BACKENDS: Backend[] = ['memory', 'pglite', 'postgres'];

const TABLES = 'shops, memberships, agents, resources, journal, snapshot_parts, shop_lease, sidecars, archive, audit';

/** Who a world's sidecar is: by default `test-<backend>`; another id is a second sidecar on the same database. */
export interface StoresOptions {
  sidecar?: string;
  /** Join the database as the last world left it (a second sidecar): no truncation. */
  join?: boolean;
}

/** One database per backend for a whole test file; each world truncates it (unless it joins). */
export class Backends {
  private pglite?: Driver;
  private pg?: Driver;
  private postgres?: Postgres;

  /** The SQL database of a backend, for a test that changes rows behind the desk's back. */
  async driver(backend: Exclude<Backend, 'memory'>): Promise<Driver> {
    return backend === 'pglite'
      ? (this.pglite ??= await pgliteDriver())
      : (this.pg ??= await pgDriver((this.postgres ??= await startPostgres()).url));
  }

  async stores(backend: Backend, o: StoresOptions = {}): Promise<Stores> {
    const sidecar = o.sidecar ?? `test-${backend}`;
    const me = { holder: `${sidecar}#1`, sidecar };
    if (backend === 'memory')
      return {
        store: new MemoryStore(),
        journal: new MemoryJournal(),
        leases: new SoleOwner(me.holder, me.sidecar),
        archive: new MemoryArchive(),
        audit: new MemoryAudit(),
      };
    const db = await this.driver(backend);
    // PostgreSQL as production uses it: shared, so shops are leased (this world's one sidecar takes them all).
    const stores = await storesOn(db, me, { shared: backend === 'postgres' });
    if (!o.join) await db.query(`TRUNCATE ${TABLES}`);
    return stores;
  }

  async close(): Promise<void> {
    await this.pglite?.close();
    await this.pg?.close();
    await this.postgres?.stop();
  }
}

/** Collects what the Desk sends on its own; `hold()` keeps deliveries unacknowledged until `release()`. */
export class TestOutbox implements Outbox {
  readonly sent: XmlElement[] = [];
  readonly batches: number[] = []; // stanzas per deliver()
  private held: (() => void)[] | undefined;
  private onHeld: (() => void)[] = [];
  failing = false;

  /** Deliveries waiting for an acknowledgement (while holding). */
  get waiting(): number {
    return this.held?.length ?? 0;
  }

  /** Resolves once `n` deliveries wait for an acknowledgement. */
  async whenHeld(n = 1): Promise<void> {
    while (this.waiting < n) await new Promise<void>((r) => this.onHeld.push(r));
  }

  send(stanzas: XmlElement[]): void {
    this.sent.push(...stanzas.map((x) => parseElement(serialize(x))));
  }

  deliver(stanzas: string[]): Promise<void> {
    if (this.failing) return Promise.reject(new Error('no shim connected'));
    const done = () => {
      this.batches.push(stanzas.length);
      this.sent.push(...stanzas.map((x) => parseElement(x)));
    };
    if (!this.held) {
      done();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.held!.push(() => {
        done();
        resolve();
      });
      for (const f of this.onHeld.splice(0)) f();
    });
  }

  hold(): void {
    this.held ??= [];
  }

  /** A crash: what was held is never acknowledged; later deliveries are. */
  crash(): void {
    this.held = undefined;
  }

  /** Acknowledges what was held, and stops holding. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const f of held) f();
  }
}

export interface WorldOptions {
  backend: Backend;
  backends: Backends;
  config: Config;
  clock?: number;
  random?: () => number;
  hooks?: FilterHooks;
  onBatch?: DeskDeps['onBatch'];
  /** Told of closes and ratings (the same one across restart(), as a long-lived scraper would see it). */
  metrics?: DeskMetrics;
  /** Webhook events: how they are POSTed (e.g. src/bot/event-hook.ts to a test's HTTP server), and counted. */
  postEvent?: PostEvent;
  eventMetrics?: EventMetrics;
  /** Stands between the desk and its journal store (e.g. holds writes). */
  journal?: (store: JournalStore) => JournalStore;
  /** Which sidecar this world is, and whether it joins the database another world set up. */
  stores?: StoresOptions;
}

export type World = Awaited<ReturnType<typeof deskWorld>>;

export async function deskWorld(o: WorldOptions) {
  let clock = o.clock ?? 1_700_000_000_000;
  const stores = await o.backends.stores(o.backend, o.stores);
  const journalStore = o.journal ? o.journal(stores.journal) : stores.journal;
  await seedStore(stores.store, o.config, clock - 60_000);
  const outbox = new TestOutbox();

  const build = async () => {
    const directory = new Directory(stores.store);
    await directory.reload();
    const presence = new Presence(stores.store);
    await presence.load();
    presence.close(); // the world moves its own clock; node grace timers are tested on their own
    let ownership: Ownership | undefined;
    const link = new ShimLink(silent);
    const desk = new Desk({
      config: o.config,
      directory,
      presence,
      journalStore,
      archive: stores.archive,
      askBot,
      link: outbox,
      askPresence: (node) => link.reportPresence(node),
      log: silent,
      now: () => clock,
      random: o.random,
      metrics: o.metrics,
      postEvent: o.postEvent,
      eventMetrics: o.eventMetrics,
      onBatch: o.onBatch,
      // As main.ts wires it: a write refused for a lost lease drops those shops here.
      onJournalError: (e) => {
        if (e instanceof LeaseLost) ownership?.refused(e.shops);
      },
    });
    const watch = new WatchList({ directory, shops: desk.shops, sidecar: '', push: (w) => link.pushWatchList(w) });
    ownership = new Ownership({ leases: stores.leases, desk, directory, watch, log: silent });
    await ownership.round();
    const handlers = stanzaFilterHandlers({ desk, link, watch, log: silent }, o.hooks);
    return { desk, directory, presence, link, watch, ownership, handlers };
  };
  let parts = await build();
  let seq = 0;

  const filter = (xml: string, deadlineMs = 0) =>
    new Promise<Verdict>((resolve, reject) => {
      const request: FilterRequest = {
        seq: String(++seq),
        hook: Hook.HOOK_FILTER_PACKET,
        host: 'test',
        stanza: Buffer.from(xml),
        deadlineMs: String(deadlineMs),
      };
      parts.handlers.filter(
        { request, getDeadline: () => Infinity } as never,
        ((err: Error | null, v: Verdict) => (err ? reject(err) : resolve(v))) as never,
      );
    });
  const event = (kind: Kind, jid: string, show = '') =>
    parts.desk.events.handleEvent({ kind, jid, show, priority: 0, status: '' }, 'node1');

  return {
    ...stores,
    outbox,
    sent: outbox.sent,
    get desk() {
      return parts.desk;
    },
    get directory() {
      return parts.directory;
    },
    get presence() {
      return parts.presence;
    },
    get link() {
      return parts.link;
    },
    get ownership() {
      return parts.ownership;
    },
    get watch() {
      return parts.watch;
    },
    /** The gRPC handlers the world's filter() calls. */
    get handlers() {
      return parts.handlers;
    },
    filter,
    event,
    now: () => clock,
    advance: (ms: number) => {
      clock += ms;
    },
    takeSent: () => outbox.sent.splice(0),
    /** A new Desk on the same stores: what a restarted sidecar would know. */
    restart: async () => {
      await parts.desk.journal.flushed();
      parts = await build();
    },
    /** Timers, then whatever they set going (releases of kept messages). */
    tick: async () => {
      await parts.desk.tick();
      await parts.desk.settled();
    },
    online: async (jid: string, resource = 'pc', show = '') => {
      await event(Kind.PRESENCE_SET, `${jid}/${resource}`, show);
      await parts.desk.settled();
    },
    offline: (jid: string, resource = 'pc') => event(Kind.PRESENCE_UNSET, `${jid}/${resource}`),
  };
}

/** What an admin server takes from a world (the rest, token and log, is the test's). */
export function adminParts(w: World) {
  return {
    store: w.store,
    directory: w.directory,
    desk: w.desk,
    presence: w.presence,
    watch: w.watch,
    ownership: w.ownership,
    owners: leaseOwners(w.leases),
    audit: w.audit,
  };
}
