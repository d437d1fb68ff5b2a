// The sidecar's deciding core. It runs each decision synchronously over the state of a shop it holds
// (src/routing/), commits the changes through the group-committed journal, answers once they are durable,
// and then starts what the decision asked for (src/desk/after-commit.ts). Stanzas from the shims, agent
// and admin actions, queue drains and timers all take this one path: act().
//   held-shops.ts    which shops' states are held here (taken, handed over, dropped)
//   after-commit.ts  kept-message release, bot questions, archive writes
//   shim-events.ts   streams, cluster changes and presence from the shims
//   views.ts         read models for the admin API and metrics
import type { Config } from '../domain/config.js';
import { ConsultError, reject, refuse, PASS, type Decision } from '../domain/decision.js';
import type { CloseReason } from '../domain/archive.js';
import type { Log } from '../domain/log.js';
import type { AgentStatus, Shop } from '../domain/shop.js';
import { fromAgent } from '../routing/agent.js';
import { Changes, type ShopContext } from '../routing/changes.js';
import { passThrough } from '../routing/direct.js';
import { serveQueue } from '../routing/queue.js';
import { closeSession, transferSession, transferToGroup } from '../routing/session.js';
import type { Session } from '../routing/state.js';
import { runTimers } from '../routing/timers.js';
import { fromVisitor } from '../routing/visitor.js';
import { isSupervisor } from '../routing/supervisor.js';
import { bareJid } from '../xmpp/jid.js';
import { XmlError, parseElement, type XmlElement } from '../xmpp/xml.js';
import { AfterCommit } from './after-commit.js';
import { Archiver } from './archiver.js';
import type { Directory } from './directory.js';
import { HeldShops } from './held-shops.js';
import { Journal, NotDurable, type JournalStore } from './journal.js';
import { finishedBy, report } from './finished.js';
import {
  NO_DESK_METRICS,
  NO_EVENT_METRICS,
  type ArchiveStore,
  type AskBot,
  type DeskMetrics,
  type EventMetrics,
  type Outbox,
  type PostEvent,
  type UserEraser,
} from './ports.js';
import type { Presence } from './presence.js';
import { ShimEvents } from './shim-events.js';
import { ShopViews } from './views.js';
import { EventSender } from './event-sender.js';
import { eventsOf } from '../routing/events.js';
import { Erasure } from './erasure.js';

export interface DeskDeps {
  config: Config;
  directory: Directory;
  presence: Presence;
  journalStore: JournalStore;
  /** Closed sessions. */
  archive: ArchiveStore;
  /** The shops' bot (src/bot/webhook.ts). */
  askBot: AskBot;
  link: Outbox;
  /** POSTs a webhook event (src/bot/event-hook.ts); none: events wait in the outbox. */
  postEvent?: PostEvent;
  /** Told of webhook events delivered, failed and dropped (src/admin/outcome-metrics.ts). */
  eventMetrics?: EventMetrics;
  /** Erases a user's offline messages, MAM archive and account in ejabberd (ShimLink); none: erasure says so. */
  eraser?: UserEraser;
  /** Asks an ejabberd node's shim streams to report their agents' presence again (ShimLink.reportPresence). */
  askPresence?: (node: string) => void;
  log: Log;
  /** Told of sessions closed and ratings stored by live decisions (src/admin/metrics.ts); none by default. */
  metrics?: DeskMetrics;
  now?: () => number;
  random?: () => number;
  onBatch?: (info: { entries: number; changes: number; seconds: number; ok: boolean }) => void;
  onJournalError?: (e: unknown) => void;
}

/**
 * A shop this sidecar does not decide now: another one holds its lease, or it is being handed over, or (`unreachable`)
 * this sidecar could not renew its leases because its database does not answer, and so decides no shop at all.
 */
export class NotOwner extends ConsultError {
  constructor(
    readonly shop: string,
    unreachable = false,
  ) {
    super({
      condition: 'service-unavailable',
      type: 'wait',
      text: unreachable
        ? `the consult service cannot reach its database, so it cannot decide for ${shop} right now; please send again in a moment`
        : `${shop} is decided by another consult sidecar right now; please send again`,
    });
  }
}

export class Desk {
  readonly journal: Journal;
  readonly archiver: Archiver;
  readonly shops: HeldShops;
  readonly events: ShimEvents;
  readonly view: ShopViews;
  /** Webhook events delivered after commit (src/desk/event-sender.ts). */
  readonly sender: EventSender;
  /** Erasure and export of a visitor (src/desk/erasure.ts). */
  readonly erasure: Erasure;
  private readonly after: AfterCommit;
  private readonly config: Config;
  private readonly directory: Directory;
  private readonly presence: Presence;
  private readonly link: Outbox;
  private readonly log: Log;
  private readonly metrics: DeskMetrics;
  private overloaded = false;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(deps: DeskDeps) {
    this.config = deps.config;
    this.directory = deps.directory;
    this.presence = deps.presence;
    this.link = deps.link;
    this.log = deps.log;
    this.metrics = deps.metrics ?? NO_DESK_METRICS;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.archiver = new Archiver(deps.archive, this.log, this.config.archive.retentionDays * 86_400_000);
    this.shops = new HeldShops({
      directory: this.directory,
      store: deps.journalStore,
      now: this.now,
      loaded: (shop, n) => this.journal.loaded(shop, n),
      busy: (shop) => ({ commits: this.journal.busy(shop), releases: this.after.releasingFor(shop) }),
    });
    this.journal = new Journal(deps.journalStore, {
      states: (shop) => this.shops.state(shop),
      now: this.now,
      commitDelayMs: deps.config.commitDelayMs,
      onBatch: deps.onBatch,
      onError: deps.onJournalError,
    });
    this.after = new AfterCommit({
      shops: this.shops,
      directory: this.directory,
      archiver: this.archiver,
      askBot: deps.askBot,
      link: this.link,
      log: this.log,
      act: (shop, decide) => this.act(shop, decide),
    });
    this.events = new ShimEvents({
      directory: this.directory,
      presence: this.presence,
      drainQueue: (s) => this.drainQueue(s),
      askPresence: deps.askPresence,
    });
    this.view = new ShopViews(this.shops);
    this.sender = new EventSender({
      shops: this.shops,
      events: this.config.events,
      storedHook: (shop) => this.directory.shop(shop)?.events,
      post: deps.postEvent,
      act: (shop, decide) => this.act(shop, decide),
      log: this.log,
      metrics: deps.eventMetrics ?? NO_EVENT_METRICS,
      random: this.random,
    });
    this.erasure = new Erasure({
      shops: this.shops,
      directory: this.directory,
      archiver: this.archiver,
      link: this.link,
      eraser: deps.eraser,
      log: this.log,
      act: (shop, decide, snapshot) => this.act(shop, decide, Infinity, snapshot),
    });
  }

  // ---- stanzas -----------------------------------------------------------------

  /** The verdict on one stanza a shim forwarded; `deadline` is when the shim stops waiting (ms since the epoch). */
  async filter(stanzaXml: string | Buffer, deadline = Infinity): Promise<Decision> {
    if (deadline <= this.now())
      return reject('resource-constraint', 'wait', 'the consult service received this message after its deadline');
    if (this.overloadedNow())
      return reject('resource-constraint', 'wait', 'the consult service is overloaded; please send again in a moment');
    const size = Buffer.byteLength(stanzaXml);
    if (size > this.config.maxStanzaBytes) {
      return reject('policy-violation', 'modify', `stanza of ${size} bytes exceeds the consult limit of ${this.config.maxStanzaBytes}`);
    }
    let stanza: XmlElement;
    try {
      stanza = parseElement(stanzaXml.toString());
    } catch (e) {
      if (e instanceof XmlError) return reject('bad-request', 'modify', e.message);
      throw e;
    }
    if (stanza.name !== 'message' || !stanza.attrs.from || !stanza.attrs.to) return PASS;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return PASS;

    const from = bareJid(stanza.attrs.from);
    const shop = this.directory.shop(bareJid(stanza.attrs.to));
    if (!shop) {
      if (type === 'consult')
        return reject('item-not-found', 'cancel', `${bareJid(stanza.attrs.to)} is not a shop; consult messages go to a shop JID`);
      return passThrough(stanza);
    }
    if (!this.shops.owns(shop.jid))
      return reject('service-unavailable', 'wait', new NotOwner(shop.jid, this.shops.storeUnreachable).error.text);
    // A supervisor's messages are decided with the agents' (its commands, and the sessions it took over).
    const isAgent = this.directory.membership(shop.jid, from) !== undefined || isSupervisor(shop, from);
    return this.act(
      shop.jid,
      (cx, w) => (isAgent ? fromAgent(cx, w, stanza, from, type) : fromVisitor(cx, w, stanza, from, type)),
      deadline,
    ).catch((e) => {
      if (e instanceof NotDurable) {
        return e.reason === 'deadline'
          ? reject('resource-constraint', 'wait', 'the consult service could not record this message in time; please send it again')
          : reject('service-unavailable', 'wait', 'the consult service could not record this message; please send it again');
      }
      throw e;
    });
  }

  /** Overload starts at maxPendingDecisions and ends below half of it; each change is logged once. */
  private overloadedNow(): boolean {
    const backlog = this.journal.backlog;
    const max = this.config.maxPendingDecisions;
    if (!this.overloaded && backlog >= max) {
      this.overloaded = true;
      this.log.warn('overloaded: refusing new stanzas until the journal catches up', { backlog, maxPendingDecisions: max });
    } else if (this.overloaded && backlog < max / 2) {
      this.overloaded = false;
      this.log.info('overload over: accepting stanzas again', { backlog });
    }
    return this.overloaded;
  }

  /**
   * Runs a decision on a shop's state, then waits until its changes are durable. Changes already in memory are
   * taken back if the decision throws or its commit fails; what the decision asked for starts afterwards.
   */
  private async act<T>(shopJid: string, decide: (cx: ShopContext, w: Changes) => T, deadline = Infinity, snapshot = false): Promise<T> {
    const shop = this.directory.shop(shopJid);
    if (!shop) throw refuse('item-not-found', 'cancel', `${shopJid} is not a shop`);
    const st = this.shops.deciding(shopJid);
    if (!st) throw new NotOwner(shopJid, this.shops.storeUnreachable);
    // With a webhook, each change's events are recorded right behind it (the same journal batch: an outbox).
    const hook = this.sender.hookOf(shopJid);
    const w = new Changes(st, hook ? (s, c) => eventsOf(s, c, hook) : undefined);
    const droppedBefore = st.eventsDropped;
    let result: T;
    try {
      result = decide(this.context(shop), w);
    } catch (e) {
      w.revert();
      throw e;
    }
    const finished = finishedBy(w);
    const emitted = w.list.some((c) => c.op === 'emit');
    const dropped = st.eventsDropped - droppedBefore; // a full outbox dropped its oldest (read before others decide)
    // Nothing changed and nothing of this shop is pending: the answer rests on durable state only.
    if (w.list.length > 0 || this.journal.busy(shopJid)) await this.journal.commit(shopJid, w.list, w.undos, deadline, snapshot);
    if (finished) report(this.metrics, shopJid, finished);
    if (dropped > 0) this.sender.dropped(shopJid, dropped);
    if (emitted) this.sender.kick(shopJid);
    // A status spans the agent's shops and is confirmed only once set.
    for (const s of w.statuses) await this.setAgentStatus(s.agent, s.status);
    this.after.run(shopJid, w);
    return result;
  }

  private context(shop: Shop): ShopContext {
    return {
      shop,
      texts: this.directory.textsOf(shop.jid),
      members: this.directory.memberMap(shop.jid),
      agentState: this.presence.state,
      agentStatus: (agent) => this.presence.status(agent),
      config: this.config,
      now: this.now(),
      random: this.random,
    };
  }

  // ---- agent and admin actions -----------------------------------------------------

  async setAgentStatus(agent: string, status: AgentStatus): Promise<void> {
    await this.presence.setStatus(agent, status);
    for (const s of this.directory.shopsOf(agent)) await this.drainQueue(s.jid);
  }

  async closeSession(shopJid: string, visitor: string, reason: CloseReason): Promise<void> {
    this.link.send(
      await this.act(bareJid(shopJid), (cx, w) => [
        ...closeSession(cx, w, this.sessionOf(w, cx.shop, visitor), reason),
        ...serveQueue(cx, w),
      ]),
    );
  }

  async transferSession(shopJid: string, visitor: string, toAgent: string, reason = ''): Promise<void> {
    this.link.send(
      await this.act(bareJid(shopJid), (cx, w) => transferSession(cx, w, this.sessionOf(w, cx.shop, visitor), toAgent, reason)),
    );
  }

  async transferToGroup(shopJid: string, visitor: string, group: string, reason = ''): Promise<void> {
    this.link.send(await this.act(bareJid(shopJid), (cx, w) => transferToGroup(cx, w, this.sessionOf(w, cx.shop, visitor), group, reason)));
  }

  /** An admin closes a visitor's left message: its kept messages are dropped, nobody is told. */
  async closeLeftMessage(shopJid: string, visitor: string): Promise<void> {
    await this.act(bareJid(shopJid), (cx, w) => {
      if (!w.state.left.has(visitor)) throw refuse('item-not-found', 'cancel', `no left message of ${visitor} for ${cx.shop.jid}`);
      w.do({ op: 'discard', v: visitor });
    });
  }

  private sessionOf(w: Changes, shop: Shop, visitor: string): Session {
    const s = w.state.sessions.get(visitor);
    if (!s) throw refuse('item-not-found', 'cancel', `no open session of ${visitor} with ${shop.jid}`);
    return s;
  }

  /** Assigns waiting visitors of a shop while agents have room; called when capacity may have appeared. */
  async drainQueue(shopJid: string): Promise<void> {
    if (!this.shops.deciding(shopJid)?.queue.size) return;
    this.link.send(await this.act(shopJid, serveQueue));
  }

  /** Timers of every shop, and kept messages whose release stopped half-way (no shim then). */
  async tick(): Promise<void> {
    // Every shop decides first (act runs synchronously up to its commit), so all their changes share one write.
    await Promise.all(
      this.shops.owned().map(async (shop) => {
        try {
          this.link.send(await this.act(shop, runTimers));
        } catch (e) {
          if (e instanceof NotOwner) return; // handed over meanwhile: its new owner runs its timers
          throw e;
        }
        this.after.resume(shop);
        this.sender.kick(shop);
      }),
    );
    await this.archiver.purge(this.now()).catch((e) => this.log.warn('archive retention purge failed', { err: e }));
  }

  /** Resolves when no commit is pending and nothing started after a commit is under way (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.journal.backlog > 0 || this.after.busy) await new Promise((r) => setImmediate(r));
  }
}
