// Erasure and export of one visitor across the shops this sidecar decides. Forgetting runs a `forget` decision in
// every shop held here, each committed with its shop's snapshot in the same write (the snapshot supersedes every
// journal row of the shop, so no earlier batch still holds the visitor's messages), then deletes its archived
// sessions and asks ejabberd, through a shim, to erase its offline messages, MAM archive and (if asked) account.
// Shops another sidecar decides are listed, not touched: the caller repeats the request there.
import type { ArchiveRecord } from '../domain/archive.js';
import { refuse } from '../domain/decision.js';
import type { Log } from '../domain/log.js';
import type { Changes, ShopContext } from '../routing/changes.js';
import { forgetVisitor, holds } from '../routing/forget.js';
import { serveQueue } from '../routing/queue.js';
import type { ShopEvent, ShopState, Stored, Unarchived } from '../routing/state.js';
import type { XmlElement } from '../xmpp/xml.js';
import type { Archiver } from './archiver.js';
import type { Directory } from './directory.js';
import type { HeldShops } from './held-shops.js';
import type { ErasedInEjabberd, Outbox, UserEraser } from './ports.js';

/** Runs a decision on a shop; `snapshot`: its snapshot goes with the commit (the Desk's act). */
export type ActWithSnapshot = <T>(shopJid: string, decide: (cx: ShopContext, w: Changes) => T, snapshot: boolean) => Promise<T>;

export interface ErasureDeps {
  shops: HeldShops;
  directory: Directory;
  archiver: Archiver;
  link: Outbox;
  eraser?: UserEraser;
  log: Log;
  act: ActWithSnapshot;
}

export interface Forgotten {
  visitor: string;
  /** Shops decided here whose state held something of the visitor (all of them were snapshotted). */
  shops: string[];
  /** Shops another sidecar decides: their live state is not erased here (repeat the request on that sidecar). */
  heldElsewhere: string[];
  /** Archived sessions deleted. */
  archived: number;
  /** What ejabberd erased, or why it could not (no shim linked, a shim error). */
  ejabberd: ErasedInEjabberd | { error: string };
  /** Nothing left to repeat: every shop decided here and ejabberd erased it. */
  complete: boolean;
}

/** Everything one shop's live state holds of a visitor. */
export interface ShopHoldings {
  shop: string;
  session?: unknown;
  queue?: { since: number; group: string; position: number };
  kept: Stored[];
  history: Stored[];
  transcript?: unknown;
  sticky?: { agent: string; until: number };
  ratingDue?: { id: string; until: number };
  left?: unknown;
  unarchived: Unarchived[];
  /** Its webhook events not yet delivered. */
  events: ShopEvent[];
}

export interface VisitorExport {
  visitor: string;
  exportedAt: number;
  shops: ShopHoldings[];
  heldElsewhere: string[];
  archive: ArchiveRecord[];
}

const ARCHIVE_PAGE = 500;

export class Erasure {
  constructor(private readonly deps: ErasureDeps) {}

  async forget(visitor: string, account: boolean): Promise<Forgotten> {
    const { shops, archiver, link, log, directory } = this.deps;
    // Its ejabberd data (and account) would go too: staff and shops are never erased as visitors.
    if (directory.shop(visitor)) throw refuse('not-allowed', 'cancel', `${visitor} is a shop, not a visitor`);
    if (directory.isAgent(visitor)) throw refuse('not-allowed', 'cancel', `${visitor} is an agent or supervisor, not a visitor`);
    const touched: string[] = [];
    for (const shop of shops.owned()) {
      const st = shops.deciding(shop);
      if (!st) continue;
      if (holds(st, visitor)) touched.push(shop);
      // Every shop held here, holding something now or not: its older journal rows may still name the visitor.
      link.send(await this.deps.act(shop, (cx, w): XmlElement[] => [...forgetVisitor(cx, w, visitor), ...serveQueue(cx, w)], true));
      await archiver.idle(shop);
    }
    const archived = await archiver.store.forgetVisitor(visitor);
    let ejabberd: Forgotten['ejabberd'];
    if (!this.deps.eraser) ejabberd = { error: 'no way to ejabberd in this process' };
    else {
      try {
        ejabberd = await this.deps.eraser.eraseUser(visitor, account);
      } catch (e) {
        ejabberd = { error: e instanceof Error ? e.message : String(e) };
      }
    }
    const heldElsewhere = this.heldElsewhere();
    const result = {
      visitor,
      shops: touched,
      heldElsewhere,
      archived,
      ejabberd,
      complete: heldElsewhere.length === 0 && !('error' in ejabberd),
    };
    log.info('visitor forgotten', { visitor, shops: touched.length, archived, heldElsewhere, ejabberd });
    return result;
  }

  async export(visitor: string, now: number): Promise<VisitorExport> {
    const out: ShopHoldings[] = [];
    for (const [shop, st] of this.deps.shops.all()) if (holds(st, visitor)) out.push(holdingsOf(shop, st, visitor));
    const archive: ArchiveRecord[] = [];
    for (;;) {
      const last = archive.at(-1);
      const page = await this.deps.archiver.store.search({
        visitor,
        limit: ARCHIVE_PAGE,
        ...(last ? { after: { endedAt: last.endedAt, id: last.id } } : {}),
      });
      archive.push(...page);
      if (page.length < ARCHIVE_PAGE) break;
    }
    return { visitor, exportedAt: now, shops: out, heldElsewhere: this.heldElsewhere(), archive };
  }

  /** Shops of the directory this sidecar does not decide now. */
  private heldElsewhere(): string[] {
    return this.deps.directory
      .allShops()
      .map((s) => s.jid)
      .filter((jid) => !this.deps.shops.owns(jid))
      .sort();
  }
}

function holdingsOf(shop: string, st: ShopState, v: string): ShopHoldings {
  const since = st.queue.get(v);
  const sticky = st.sticky.peek(v);
  return {
    shop,
    ...(st.sessions.has(v) ? { session: st.sessions.get(v) } : {}),
    ...(since !== undefined ? { queue: { since, group: st.queueGroup.get(v) ?? '', position: st.positionOf(v) } } : {}),
    kept: st.kept.get(v) ?? [],
    history: st.history.get(v) ?? [],
    ...(st.transcripts.has(v) ? { transcript: st.transcripts.get(v) } : {}),
    ...(sticky ? { sticky: { agent: sticky.agent, until: sticky.until } } : {}),
    ...(st.ratingDue.has(v) ? { ratingDue: st.ratingDue.get(v) } : {}),
    ...(st.left.has(v) ? { left: st.left.get(v) } : {}),
    unarchived: [...st.unarchived.values()].filter((u) => u.kind === 'session' && u.record.visitor === v),
    events: [...st.outbox.values()].filter((e) => e.visitor === v),
  };
}
