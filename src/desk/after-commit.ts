// What a decision sets in motion once its changes are durable, off the decision path: kept messages
// released to the agent now serving their visitor, questions for the bot, closed sessions written to
// the archive. Each of them ends in a new decision of its own (through `act`), never in a write here.
import { createHash } from 'node:crypto';
import type { Log } from '../domain/log.js';
import type { BotAsk, Changes, HistoryLookup, ShopContext } from '../routing/changes.js';
import { HISTORY_MAX, historyAnswer } from '../routing/history.js';
import { byNewest, type ArchiveRecord } from '../domain/archive.js';
import { toAgent } from '../routing/replies.js';
import { keptId, type Stored } from '../routing/state.js';
import { relay } from '../xmpp/stanzas.js';
import { findChild, parseElement, serialize, type XmlElement } from '../xmpp/xml.js';
import { botAnswered, botFailed } from '../routing/bot.js';
import type { Archiver } from './archiver.js';
import type { Directory } from './directory.js';
import type { HeldShops } from './held-shops.js';
import type { AskBot, Outbox } from './ports.js';

/** Kept messages go to the agent in Injects of at most this many stanzas / bytes. */
const RELEASE_MAX_STANZAS = 50;
const RELEASE_MAX_BYTES = 256 * 1024;

/**
 * A kept message's key, the same in every Inject of any sidecar (it depends on the journaled entry only):
 * `shop\nvisitor\nat\nbody id\ndigest of the kept XML`. The shim routes a key once, and reads shop,
 * visitor, at and body id from it to hold back a message it bounced to the visitor (consult_inject_keys).
 */
export function keptKey(shopJid: string, visitor: string, k: Stored, original = parseElement(k.xml)): string {
  const body = findChild(original, 'body');
  const bodyId = (body?.attrs.id ?? '').replace(/\n/g, ' ');
  const digest = createHash('sha256').update(k.xml).digest('base64url').slice(0, 16);
  return `${shopJid}\n${visitor}\n${k.at}\n${bodyId}\n${digest}`;
}

/** Runs a decision on a shop and waits until it is durable (the Desk's act). */
export type Act = <T>(shopJid: string, decide: (cx: ShopContext, w: Changes) => T) => Promise<T>;

export interface AfterCommitDeps {
  shops: HeldShops;
  directory: Directory;
  archiver: Archiver;
  askBot: AskBot;
  link: Outbox;
  log: Log;
  act: Act;
}

export class AfterCommit {
  private readonly releasing = new Set<string>(); // shop\nvisitor with a release under way
  private readonly botCalls = new Map<string, Promise<void>>(); // shop\nvisitor → its questions, one at a time
  private lookups = 0; // archive look-ups under way (`/history`)

  constructor(private readonly deps: AfterCommitDeps) {}

  /** What a committed decision asked for. */
  run(shopJid: string, w: Changes): void {
    for (const visitor of w.releases) this.release(shopJid, visitor);
    for (const ask of w.asks) this.askBot(shopJid, ask);
    for (const lookup of w.lookups) this.lookUp(shopJid, lookup);
    if (w.state.unarchived.size) this.archive(shopJid);
  }

  /** Every tick: kept messages whose release stopped half-way (no shim then), archive writes that failed. */
  resume(shopJid: string): void {
    const st = this.deps.shops.state(shopJid);
    if (!st) return;
    for (const visitor of st.kept.keys()) if (st.sessions.has(visitor)) this.release(shopJid, visitor);
    if (st.unarchived.size) this.archive(shopJid);
  }

  /** Whether kept messages of the shop are on their way. */
  releasingFor(shopJid: string): boolean {
    return [...this.releasing].some((k) => k.startsWith(`${shopJid}\n`));
  }

  get busy(): boolean {
    return this.releasing.size > 0 || this.botCalls.size > 0 || this.lookups > 0 || this.deps.archiver.busy;
  }

  private archive(shopJid: string): void {
    const st = this.deps.shops.state(shopJid);
    if (!st) return;
    const { act } = this.deps;
    this.deps.archiver.flush(
      shopJid,
      st,
      () => act(shopJid, () => undefined), // waits for every earlier commit of the shop
      (keys) => act(shopJid, (_cx, w) => w.do({ op: 'archived', keys })),
    );
  }

  /**
   * An agent's `/history`: the visitor's sessions in the archive, with those closed but not written there yet (and
   * ratings not written yet), newest first; the answer goes to the agent. Nothing is decided or journaled.
   */
  private lookUp(shopJid: string, lookup: HistoryLookup): void {
    const { archiver, directory, link, log, shops } = this.deps;
    this.lookups++;
    void (async () => {
      const stored = await archiver.store.search({ shop: shopJid, visitor: lookup.visitor, limit: HISTORY_MAX }).then(
        (r) => r,
        (e: Error) => {
          log.warn('archive look-up for /history failed', { shop: shopJid, visitor: lookup.visitor, err: e.message });
          return e;
        },
      );
      let found: ArchiveRecord[] | Error = stored;
      const st = shops.state(shopJid);
      if (!(stored instanceof Error) && st) {
        const byId = new Map(stored.map((r) => [r.id, r]));
        for (const u of st.unarchived.values())
          if (u.kind === 'session' && u.record.visitor === lookup.visitor) byId.set(u.record.id, { ...u.record, ...byId.get(u.record.id) });
        for (const u of st.unarchived.values()) {
          const r = u.kind === 'rating' ? byId.get(u.id) : undefined;
          if (r && u.kind === 'rating') byId.set(u.id, { ...r, rating: u.score, ratedAt: u.at });
        }
        found = [...byId.values()].sort(byNewest).slice(0, HISTORY_MAX);
      }
      link.send([historyAnswer({ shop: shopJid, texts: directory.textsOf(shopJid), lookup, found })]);
    })()
      .catch((e) => log.warn('/history not answered', { shop: shopJid, visitor: lookup.visitor, err: e }))
      .finally(() => this.lookups--);
  }

  /** Asks the bot, one question of a visitor at a time; its answer (or failure) is a new decision. */
  private askBot(shopJid: string, ask: BotAsk): void {
    const { directory, log, act, link } = this.deps;
    const key = `${shopJid}\n${ask.visitor}`;
    const run = async () => {
      const shop = directory.shop(shopJid);
      if (!shop) return;
      const history = this.deps.shops.state(shopJid)?.transcripts.get(ask.visitor)?.lines.slice(-20) ?? [];
      const question = { shop: shopJid, visitor: ask.visitor, id: ask.id, text: ask.text, msgType: ask.msgType, history };
      const answer = await this.deps.askBot(shop.bot, question).then(
        (a) => a,
        (e: Error) => {
          log.warn('bot did not answer: the visitor goes to a human', { shop: shopJid, visitor: ask.visitor, err: e.message });
          return undefined;
        },
      );
      const out: XmlElement[] = await act(shopJid, (cx, w) =>
        answer ? botAnswered(cx, w, ask.visitor, answer) : botFailed(cx, w, ask.visitor),
      );
      link.send(out);
    };
    const next = (this.botCalls.get(key) ?? Promise.resolve())
      .then(run)
      .catch((e) => log.warn('bot answer not recorded', { shop: shopJid, visitor: ask.visitor, err: e }));
    this.botCalls.set(key, next);
    void next.finally(() => {
      if (this.botCalls.get(key) === next) this.botCalls.delete(key);
    });
  }

  /**
   * Hands a served visitor's kept messages to its agent in bounded Injects, oldest first. Each batch is deleted
   * (moved to the history) only after a shim acknowledged it; if none does, the next tick tries again.
   */
  private release(shopJid: string, visitor: string): void {
    const key = `${shopJid}\n${visitor}`;
    if (this.releasing.has(key)) return;
    this.releasing.add(key);
    void this.releaseAll(shopJid, visitor)
      .catch((e) => this.deps.log.warn('release of kept messages paused; the next tick resumes it', { shop: shopJid, visitor, err: e }))
      .finally(() => this.releasing.delete(key));
  }

  private async releaseAll(shopJid: string, visitor: string): Promise<void> {
    for (;;) {
      const st = this.deps.shops.state(shopJid);
      const session = st?.sessions.get(visitor);
      const kept = st?.kept.get(visitor);
      if (!st || !session || !kept?.length) return;
      const relayed: Stored[] = [];
      const ids: string[] = []; // what this batch takes out of kept, by identity (a revoke may take one first)
      const keys: string[] = [];
      let bytes = 0;
      for (const k of kept) {
        if (relayed.length === RELEASE_MAX_STANZAS || (relayed.length > 0 && bytes + k.xml.length > RELEASE_MAX_BYTES)) break;
        const original = parseElement(k.xml);
        const xml = serialize(relay(original, toAgent(session, k.at)));
        relayed.push({ at: k.at, xml });
        ids.push(keptId(k));
        keys.push(keptKey(shopJid, visitor, k, original));
        bytes += xml.length;
      }
      await this.deps.link.deliver(
        relayed.map((r) => r.xml),
        keys,
      );
      await this.deps.act(shopJid, (_cx, w) => {
        // Erased while on their way (forget): nothing of them is journaled again.
        if (w.state.kept.has(visitor)) w.do({ op: 'release', v: visitor, n: relayed.length, relayed, ids });
      });
    }
  }
}
