// Which store a sidecar runs on, from its URL, and the stores (shops, journal, leases, archive, audit) on it.
import type { Store, ArchiveStore } from '../desk/ports.js';
import type { JournalStore } from '../desk/journal.js';
import { type ShopLeases, SoleOwner } from '../cluster/leases.js';
import { MemoryStore } from './memory-store.js';
import { MemoryJournal } from './memory-journal.js';
import { MemoryArchive } from './memory-archive.js';
import { pgliteDriver, pgDriver, type Driver, type PgOptions, type StoreFailed } from './driver.js';
import { SqlStore } from './sql-store.js';
import { SqlArchive } from './sql-archive.js';
import { SqlJournal } from './sql-journal.js';
import { SqlShopLeases } from './sql-leases.js';
import type { AuditStore } from '../domain/audit.js';
import { MemoryAudit } from './memory-audit.js';
import { SqlAudit } from './sql-audit.js';

export interface Stores {
  store: Store;
  journal: JournalStore;
  archive: ArchiveStore; // closed sessions
  audit: AuditStore; // admin actions
  /** Which shops this sidecar decides: all of them (memory, PGlite), or those whose lease it holds (PostgreSQL). */
  leases: ShopLeases;
  /** Resolves once the store failed beyond repair (the embedded store: a PANIC, an abort): the process must end. */
  failed?: Promise<StoreFailed>;
  /** Bytes free where the store writes (the embedded store on disk; a PostgreSQL server's disk is not ours to see). */
  freeBytes?: () => number;
}

/** Who this sidecar is: `holder` is this process (fences writes), `sidecar` its stable id (spreads shops). */
export interface Identity {
  holder: string;
  sidecar: string;
  /** false: the shims cannot reach this sidecar yet, so it is no candidate owner until leases.markReady(). */
  ready?: boolean;
}

/**
 * `memory:` (all in this process), `pglite:memory` (embedded, not persisted), `pglite:<dir>` (embedded, persisted
 * in dir), or `postgres://…` / `postgresql://…` (a PostgreSQL server, via a pg Pool, shared by several sidecars).
 */
export async function openStores(url: string, me: Identity, opts: { leaseTtlMs?: number; postgres?: PgOptions } = {}): Promise<Stores> {
  const { leaseTtlMs } = opts;
  if (url === 'memory:')
    return {
      store: new MemoryStore(),
      journal: new MemoryJournal(),
      leases: new SoleOwner(me.holder, me.sidecar),
      archive: new MemoryArchive(),
      audit: new MemoryAudit(),
    };
  if (url === 'pglite:memory') return storesOn(await pgliteDriver(), me, { shared: false });
  if (url.startsWith('pglite:')) return storesOn(await pgliteDriver(url.slice('pglite:'.length)), me, { shared: false });
  if (/^postgres(ql)?:\/\//.test(url)) return storesOn(await pgDriver(url, opts.postgres), me, { shared: true, leaseTtlMs });
  throw new Error(`unknown store url ${JSON.stringify(url)}: use memory:, pglite:memory, pglite:<dir> or postgres://…`);
}

/**
 * The stores on an open database connection (tests share one between cases). `shared`: several sidecars may use
 * the database (PostgreSQL), so shops are leased and writes fenced; PGlite is embedded in one process, which owns all.
 */
export async function storesOn(db: Driver, me: Identity, opts: { shared: boolean; leaseTtlMs?: number }): Promise<Stores> {
  const store = await SqlStore.open(db);
  const archive = new SqlArchive(db);
  const audit = new SqlAudit(db);
  const health = { failed: db.failed, freeBytes: db.freeBytes };
  if (!opts.shared) return { store, journal: new SqlJournal(db), leases: new SoleOwner(me.holder, me.sidecar), archive, audit, ...health };
  return {
    store,
    journal: new SqlJournal(db, me.holder),
    leases: new SqlShopLeases(db, me.holder, me.sidecar, opts.leaseTtlMs, { ready: me.ready }),
    archive,
    audit,
    ...health,
  };
}
