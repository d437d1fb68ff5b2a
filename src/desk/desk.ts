// The sidecar's deciding core. It holds the state of every shop it owns in memory, runs
// each decision synchronously over it (src/routing/), commits the changes through the
// group-committed journal and answers once they are durable. Timers, queue drains, admin
// actions and the release of kept messages take the same path.
import { Archiver } from './archiver.js';
import { MemoryArchive } from '../storage/memory-archive.js';
import { type ArchiveStore } from './stores.js';
import { askBot } from '../bot/webhook.js';
import type { Config } from '../domain/config.js';
import type { Directory } from './directory.js';
import { SessionEvent_Kind as Kind, type SessionEvent } from '../gen/consult/v1/filter.js';
import { Journal, NotDurable, type JournalStore, type LoadedShop } from './journal.js';
import type { Log } from '../domain/log.js';
import type { Presence } from './presence.js';
import { Changes, type ShopContext } from '../routing/changes.js';
import { closeSession, transferSession, transferToGroup } from '../routing/session.js';
import { fromAgent } from '../routing/agent.js';
import { fromVisitor } from '../routing/visitor.js';
import { passThrough } from '../routing/direct.js';
import { runTimers } from '../routing/timers.js';
import { serveQueue } from '../routing/queue.js';
import { statusCommand } from '../routing/commands.js';
import { toAgent } from '../routing/replies.js';
import { type CloseReason } from '../domain/archive.js';
import { ConsultError, PASS, reject, type Decision } from '../domain/decision.js';
import { agentInfo, isInfoCommand } from '../routing/agent-info.js';
import { botAnswered, botFailed, type BotAsk } from '../routing/bot.js';
import { apply, ShopState, type Session, type Stored } from '../routing/state.js';
import { type Limits } from '../domain/shop.js';
import { render } from '../domain/texts.js';
import type { AgentStatus, Shop } from '../domain/shop.js';
import { bareJid } from '../xmpp/jid.js';
import { QCHAT_TO_AGENT, ack, ensureBodyId, notice, relay } from '../xmpp/stanzas.js';
import { XmlError, parseElement, serialize, type XmlElement } from '../xmpp/xml.js';

/** Where stanzas the sidecar sends on its own go: the shims (ShimLink), or a test's list. */
export interface Outbox {
  /** Fire and forget. */
  send(stanzas: XmlElement[]): void;
  /** Resolves once ejabberd has them; rejects if no shim took them. */
  deliver(stanzas: string[]): Promise<void>;
}

export interface DeskDeps {
  config: Config;
  directory: Directory;
  presence: Presence;
  journalStore: JournalStore;
  /** Closed sessions (default: in memory). */
  archive?: ArchiveStore;
  link: Outbox;
  log: Log;
  /** This sidecar's stable id, told to the shims with the shops it owns. */
  sidecar?: string;
  now?: () => number;
  random?: () => number;
  onBatch?: (info: { entries: number; changes: number; seconds: number; ok: boolean }) => void;
  onJournalError?: (e: unknown) => void;
}

/** Kept messages go to the agent in Injects of at most this many stanzas / bytes. */
const RELEASE_MAX_STANZAS = 50;
const RELEASE_MAX_BYTES = 256 * 1024;

const refuse = (condition: string, type: 'cancel' | 'wait', text: string) => new ConsultError({ condition, type, text });

/** A shop this sidecar does not decide now (another one holds its lease, or it is being handed over). */
export class NotOwner extends ConsultError {
  constructor(readonly shop: string) {
    super({
      condition: 'service-unavailable',
      type: 'wait',
      text: `${shop} is decided by another consult sidecar right now; please send again`,
    });
  }
}

export class Desk {
  readonly journal: Journal;
  readonly archiver: Archiver;
  private readonly botCalls = new Map<string, Promise<void>>(); // shop\nvisitor → its questions, one at a time
  private readonly states = new Map<string, ShopState>();
  private readonly releasing = new Set<string>(); // shop\nvisitor with a release under way
  private readonly leaving = new Set<string>(); // shops being handed over: no new decisions
  private readonly config: Config;
  private readonly directory: Directory;
  private readonly presence: Presence;
  private readonly link: Outbox;
  private readonly store: JournalStore;
  private readonly log: Log;
  private overloaded = false;
  private readonly now: () => number;
  private readonly random: () => number;
  readonly sidecar: string;

  constructor(deps: DeskDeps) {
    this.config = deps.config;
    this.directory = deps.directory;
    this.presence = deps.presence;
    this.link = deps.link;
    this.store = deps.journalStore;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    const retentionMs = this.config.archive.retentionDays * 86_400_000;
    this.archiver = new Archiver(deps.archive ?? new MemoryArchive(), this.log, retentionMs);
    this.sidecar = deps.sidecar ?? '';
    this.journal = new Journal(this.store, {
      states: (shop) => this.states.get(shop),
      now: this.now,
      onBatch: deps.onBatch,
      onError: deps.onJournalError,
    });
  }

  // ---- ownership (src/ownership.ts decides which shops; the Desk holds their state) ------

  /** Shops whose state this sidecar holds and decides. */
  owned(): string[] {
    return [...this.states.keys()].filter((s) => !this.leaving.has(s));
  }

  owns(shopJid: string): boolean {
    return this.states.has(shopJid) && !this.leaving.has(shopJid);
  }

  /** A shop whose lease this sidecar just took: its state from the journal (the previous owner's last write included). */
  async adopt(shopJid: string): Promise<void> {
    const shop = this.directory.shop(shopJid);
    if (!shop || this.states.has(shopJid)) return;
    this.states.set(shopJid, await this.loadShop(shop));
  }

  /**
   * Gives a shop up cleanly: no new decisions, then wait until everything decided is durable and no kept messages
   * are on their way; then the state goes (the caller releases the lease after this).
   */
  async handOver(shopJid: string): Promise<void> {
    if (!this.states.has(shopJid)) return;
    this.leaving.add(shopJid);
    const releasing = () => [...this.releasing].some((k) => k.startsWith(`${shopJid}\n`));
    // A release waiting on a slow shim is not waited for long: its batch is deleted only once acknowledged, so the
    // next owner sends it again (at least once; body ids let clients spot the rare duplicate).
    const until = Date.now() + 2000;
    while (this.journal.busy(shopJid) || (releasing() && Date.now() < until)) await new Promise((r) => setTimeout(r, 2));
    this.states.delete(shopJid);
    this.leaving.delete(shopJid);
  }

  /** A lease lost (expired, or taken by another sidecar): the state here may be stale, and its writes are fenced off. */
  drop(shopJid: string): void {
    this.states.delete(shopJid);
  }

  /** The directory changed: owned shops take their new limits; a shop removed from it is no longer decided. */
  refreshShops(): void {
    for (const [jid, st] of this.states) {
      const shop = this.directory.shop(jid);
      if (!shop) this.states.delete(jid);
      else if (JSON.stringify(st.limits) !== JSON.stringify(shop.limits)) st.setLimits(shop.limits);
    }
  }

  private async loadShop(shop: Shop): Promise<ShopState> {
    const loaded = await this.store.load(shop.jid);
    const st = restore(shop.jid, shop.limits, loaded);
    st.purgeSticky(this.now());
    this.journal.loaded(
      shop.jid,
      loaded.batches.reduce((n, b) => n + b.length, 0),
    );
    return st;
  }

  /** A deleted shop (the admin API checked it has no sessions or queue): its journal goes too. */
  async forget(shopJid: string): Promise<void> {
    this.states.delete(shopJid);
    await this.store.forget(shopJid);
  }

  /** What the shims forward, and which shops they send here. */
  watchList(): { shops: string[]; agents: string[]; owned: string[]; sidecar: string } {
    return { ...this.directory.watchList(), owned: this.owned(), sidecar: this.sidecar };
  }

  // ---- stanzas -----------------------------------------------------------------

  /** The verdict on one stanza; `deadline` is when the shim stops waiting (ms since the epoch). */
  async decide(stanzaXml: string | Buffer, deadline = Infinity): Promise<Decision> {
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
    if (!this.owns(shop.jid)) return reject('service-unavailable', 'wait', new NotOwner(shop.jid).error.text);
    const isAgent = this.directory.membership(shop.jid, from) !== undefined;
    const status = isAgent ? statusCommand(stanza) : undefined;
    if (status !== undefined) return this.setStatusCommand(stanza, shop, from, status);
    if (isAgent && isInfoCommand(stanza)) return this.infoCommand(stanza, shop, from);
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
   * taken back if the decision throws or its commit fails; kept messages it freed are released afterwards.
   */
  private async act<T>(shopJid: string, decide: (cx: ShopContext, w: Changes) => T, deadline = Infinity): Promise<T> {
    const shop = this.directory.shop(shopJid);
    const st = this.states.get(shopJid);
    if (!shop) throw refuse('item-not-found', 'cancel', `${shopJid} is not a shop`);
    if (!st || this.leaving.has(shopJid)) throw new NotOwner(shopJid);
    const w = new Changes(st);
    let result: T;
    try {
      result = decide(this.context(shop), w);
    } catch (e) {
      w.revert();
      throw e;
    }
    // Nothing changed and nothing of this shop is pending: the answer rests on durable state only.
    if (w.list.length > 0 || this.journal.busy(shopJid)) await this.journal.commit(shopJid, w.list, w.undos, deadline);
    for (const visitor of w.releases) this.release(shopJid, visitor);
    for (const ask of w.asks) this.askBot(shopJid, ask);
    if (st.unarchived.size) this.archive(shopJid);
    return result;
  }

  // ---- archive and bot (issue 13): after the decision is durable, off the decision path ----

  private archive(shopJid: string): void {
    const st = this.states.get(shopJid);
    if (!st) return;
    this.archiver.flush(
      shopJid,
      st,
      () => this.act(shopJid, () => undefined), // waits for every earlier commit of the shop
      (keys) => this.act(shopJid, (_cx, w) => w.do({ op: 'archived', keys })),
    );
  }

  /** Asks the bot, one question of a visitor at a time; its answer (or failure) is a new decision. */
  private askBot(shopJid: string, ask: BotAsk): void {
    const key = `${shopJid}\n${ask.visitor}`;
    const run = async () => {
      const shop = this.directory.shop(shopJid);
      if (!shop) return;
      const history = this.states.get(shopJid)?.transcripts.get(ask.visitor)?.lines.slice(-20) ?? [];
      const answer = await askBot(shop.bot, {
        shop: shopJid,
        visitor: ask.visitor,
        id: ask.id,
        text: ask.text,
        msgType: ask.msgType,
        history,
      }).then(
        (a) => a,
        (e: Error) => {
          this.log.warn('bot did not answer: the visitor goes to a human', { shop: shopJid, visitor: ask.visitor, err: e.message });
          return undefined;
        },
      );
      const out = await this.act(shopJid, (cx, w) => (answer ? botAnswered(cx, w, ask.visitor, answer) : botFailed(cx, w, ask.visitor)));
      this.link.send(out);
    };
    const next = (this.botCalls.get(key) ?? Promise.resolve())
      .then(run)
      .catch((e) => this.log.warn('bot answer not recorded', { shop: shopJid, visitor: ask.visitor, err: e }));
    this.botCalls.set(key, next);
    void next.finally(() => {
      if (this.botCalls.get(key) === next) this.botCalls.delete(key);
    });
  }

  private context(shop: Shop): ShopContext {
    return {
      shop,
      texts: this.directory.textsOf(shop.jid),
      members: this.directory.memberMap(shop.jid),
      agentState: this.presence.state,
      config: this.config,
      now: this.now(),
      random: this.random,
    };
  }

  /** `/status dnd|standard|always-on` from an agent to any of its shops. */
  private async setStatusCommand(stanza: XmlElement, shop: Shop, agent: string, status: AgentStatus): Promise<Decision> {
    const bodyId = ensureBodyId(stanza)!;
    await this.setAgentStatus(agent, status);
    const now = this.now();
    const text = render(this.directory.textsOf(shop.jid).statusSet, { status });
    const told = notice({ shop: shop.jid, to: agent, realfrom: shop.jid, qchatid: QCHAT_TO_AGENT, now, text });
    return { action: 'drop', extra: [ack(agent, bodyId, now), told] };
  }

  /** `/sessions` from an agent: its open sessions in this shop and the queue length, answered to it alone. */
  private infoCommand(stanza: XmlElement, shop: Shop, agent: string): Decision {
    const bodyId = ensureBodyId(stanza)!;
    const st = this.states.get(shop.jid);
    const now = this.now();
    const info = agentInfo({
      shop: shop.jid,
      agent,
      status: this.presence.status(agent),
      queue: st?.queue.size ?? 0,
      sessions: [...(st?.byAgent.get(agent) ?? [])].map((v) => st!.sessions.get(v)!),
      now, // the agent's own, by index
    });
    return { action: 'drop', extra: [ack(agent, bodyId, now), info] };
  }

  // ---- notifications from the shim ---------------------------------------------

  /**
   * A shim's stream said hello: its node is alive and reports its presence again. `cluster` is the cluster as that
   * node sees it: presence held from a node outside it (a crash while no sidecar watched) is dropped.
   */
  async nodeConnected(node: string, cluster: readonly string[] = []): Promise<void> {
    await this.presence.streamOpened(node);
    if (cluster.length > 0) await this.presence.clusterIs([...cluster, node]);
  }

  /** A shim's stream closed: its node's presence goes unless it is back within the grace period. */
  nodeDisconnected(node: string): void {
    this.presence.streamClosed(node);
  }

  /** A node reported another one leaving (or joining) the cluster. */
  async clusterChanged(node: string, up: boolean): Promise<void> {
    if (!up) await this.presence.nodeDown(node);
  }

  async handleEvent(event: SessionEvent, node: string): Promise<void> {
    const full = event.jid;
    const agent = bareJid(full);
    if (!this.directory.isAgent(agent)) return;
    const resource = full.includes('/') ? full.slice(full.indexOf('/') + 1) : '';
    if (event.kind === Kind.PRESENCE_SET) {
      const write = this.presence.set({ agent, resource, node, show: event.show, priority: event.priority });
      // An agent who can take chats now takes the oldest waiting visitors.
      for (const shop of this.directory.shopsOf(agent)) await this.drainQueue(shop.jid);
      await write;
    } else if (event.kind === Kind.PRESENCE_UNSET || event.kind === Kind.SESSION_CLOSE) {
      await this.presence.remove(agent, resource);
    }
  }

  // ---- admin and agent actions -----------------------------------------------------

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

  private sessionOf(w: Changes, shop: Shop, visitor: string): Session {
    const s = w.state.sessions.get(visitor);
    if (!s) throw refuse('item-not-found', 'cancel', `no open session of ${visitor} with ${shop.jid}`);
    return s;
  }

  /** Assigns waiting visitors of a shop while agents have room; called when capacity may have appeared. */
  async drainQueue(shopJid: string): Promise<void> {
    if (!this.owns(shopJid) || !this.states.get(shopJid)?.queue.size) return;
    this.link.send(await this.act(shopJid, serveQueue));
  }

  /** Timers of every shop, and kept messages whose release stopped half-way (no shim then). */
  async tick(): Promise<void> {
    // Every shop decides first (act runs synchronously up to its commit), so all their changes share one write.
    await Promise.all(
      this.owned().map(async (shop) => {
        try {
          this.link.send(await this.act(shop, runTimers));
        } catch (e) {
          if (e instanceof NotOwner) return; // handed over meanwhile: its new owner runs its timers
          throw e;
        }
        const st = this.states.get(shop);
        for (const visitor of st?.kept.keys() ?? []) if (st!.sessions.has(visitor)) this.release(shop, visitor);
        if (st?.unarchived.size) this.archive(shop);
      }),
    );
    await this.archiver.purge(this.now()).catch((e) => this.log.warn('archive retention purge failed', { err: e }));
  }

  // ---- kept messages -------------------------------------------------------------

  /**
   * Hands a served visitor's kept messages to its agent in bounded Injects, oldest first. Each batch is deleted
   * (moved to the history) only after a shim acknowledged it; if none does, the next tick tries again.
   */
  private release(shopJid: string, visitor: string): void {
    const key = `${shopJid}\n${visitor}`;
    if (this.releasing.has(key)) return;
    this.releasing.add(key);
    void this.releaseAll(shopJid, visitor)
      .catch((e) => this.log.warn('release of kept messages paused; the next tick resumes it', { shop: shopJid, visitor, err: e }))
      .finally(() => this.releasing.delete(key));
  }

  private async releaseAll(shopJid: string, visitor: string): Promise<void> {
    for (;;) {
      const st = this.states.get(shopJid);
      const session = st?.sessions.get(visitor);
      const kept = st?.kept.get(visitor);
      if (!st || !session || !kept?.length) return;
      const relayed: Stored[] = [];
      let bytes = 0;
      for (const k of kept) {
        if (relayed.length === RELEASE_MAX_STANZAS || (relayed.length > 0 && bytes + k.xml.length > RELEASE_MAX_BYTES)) break;
        const xml = serialize(relay(parseElement(k.xml), toAgent(session, k.at)));
        relayed.push({ at: k.at, xml });
        bytes += xml.length;
      }
      await this.link.deliver(relayed.map((r) => r.xml));
      await this.act(shopJid, (_cx, w) => w.do({ op: 'release', v: visitor, n: relayed.length, relayed }));
    }
  }

  // ---- reads for the admin API and metrics ------------------------------------------

  sessions(shopJid?: string): Session[] {
    const states = shopJid ? [this.states.get(shopJid)].filter((s) => s !== undefined) : [...this.states.values()];
    return states.flatMap((st) => [...st.sessions.values()].map((s) => ({ ...s })));
  }

  queue(shopJid: string): { visitor: string; shop: string; enqueuedAt: number; kept: number; group: string }[] {
    const st = this.states.get(shopJid);
    return st
      ? [...st.queue].map(([visitor, at]) => ({
          visitor,
          shop: shopJid,
          enqueuedAt: at,
          kept: st.kept.get(visitor)?.length ?? 0,
          group: st.queueGroup.get(visitor) ?? '', // the groups it waits for; '' any agent
        }))
      : [];
  }

  counts(shopJid: string): { sessions: number; queue: number; kept: number } {
    const st = this.states.get(shopJid);
    let kept = 0;
    for (const list of st?.kept.values() ?? []) kept += list.length;
    return { sessions: st?.sessions.size ?? 0, queue: st?.queue.size ?? 0, kept };
  }

  stickyAgent(shopJid: string, visitor: string, at: number): string | undefined {
    return this.states.get(shopJid)?.stickyAgent(visitor, at);
  }

  /** Resolves when no commit is pending and no kept messages are being released (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.journal.backlog > 0 || this.releasing.size > 0 || this.botCalls.size > 0 || this.archiver.busy)
      await new Promise((r) => setImmediate(r));
  }

  loadOf(shopJid: string, agent: string): number {
    return this.states.get(shopJid)?.load(agent) ?? 0;
  }
}

/** A shop's state from its snapshot and the journal written after it. */
export function restore(shop: string, limits: Limits, loaded: LoadedShop): ShopState {
  const st = loaded.snapshot ? ShopState.fromParts(shop, limits, loaded.snapshot) : new ShopState(shop, limits);
  for (const batch of loaded.batches) for (const c of batch) apply(st, c);
  return st;
}
