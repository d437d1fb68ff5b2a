// What happens to a consult stanza, decided synchronously over one shop's in-memory state.
// Nothing here waits: a decision reads indexes, records its changes through a Changes
// writer (which applies them at once) and returns the verdict. The journal makes the
// changes durable before the verdict leaves (src/journal/journal.ts).
import type { Config } from '../config.js';
import { AGENT_STATUSES, type AgentStatus, type Membership, type Shop } from '../store.js';
import { bareJid } from '../xmpp/jid.js';
import {
  QCHAT_TO_AGENT,
  QCHAT_TO_VISITOR,
  ack,
  autoReply,
  ensureBodyId,
  notice,
  ratingRequest,
  relay,
  replay,
  withoutRealAddresses,
} from '../xmpp/stanzas.js';
import { findChild, parseElement, serialize, textOf, type XmlElement } from '../xmpp/xml.js';
import type { CloseReason } from '../archive/record.js';
import { pickAgent } from './assign.js';
import type { AgentState } from './availability.js';
import { asksForHuman, botBudgetMs, botFailed, botTurn, type BotAsk } from './bot.js';
import { botModeOf, groupAllows, groupsOf, productOf, routeKey, strategyOf } from './groups.js';
import { BOT, apply, type Change, type Session, type ShopState, type Undo } from './state.js';
import { render, type Texts } from './texts.js';

export interface StanzaErrorInfo {
  condition: string; // RFC 6120 defined condition
  type: 'cancel' | 'modify' | 'wait' | 'auth';
  text: string;
}

export type Decision =
  | { action: 'pass'; extra: XmlElement[] }
  | { action: 'rewrite'; stanza: XmlElement; xml: string; extra: XmlElement[] } // xml: the stanza, serialized once
  | { action: 'drop'; extra: XmlElement[] }
  | { action: 'reject'; error: StanzaErrorInfo; extra: XmlElement[] };

/** A refused action (unknown session, agent not available...): an error for the sender, nothing changed. */
export class ConsultError extends Error {
  constructor(readonly error: StanzaErrorInfo) {
    super(error.text);
  }
}

export const PASS: Decision = { action: 'pass', extra: [] };
export const reject = (condition: string, type: StanzaErrorInfo['type'], text: string): Decision => ({
  action: 'reject',
  error: { condition, type, text },
  extra: [],
});
const refuse = (condition: string, type: StanzaErrorInfo['type'], text: string) => new ConsultError({ condition, type, text });
const rewrite = (stanza: XmlElement, extra: XmlElement[], xml = serialize(stanza)): Decision => ({ action: 'rewrite', stanza, xml, extra });
const drop = (extra: XmlElement[] = []): Decision => ({ action: 'drop', extra });

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

export type { CloseReason };

// ---- visitors ------------------------------------------------------------------

export function fromVisitor(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, type: string): Decision {
  const st = w.state;
  const { now } = cx;
  let session = st.sessions.get(visitor);
  const hasBody = findChild(stanza, 'body') !== undefined;

  if (type === 'readmark') {
    return session && session.agent !== BOT ? rewrite(relay(stanza, toAgent(session, now), 'readmark'), []) : drop();
  }
  // Typing notifications and the like never open a session or join the queue.
  if (!session && !hasBody) return drop();
  if (!session) {
    const rated = rate(cx, w, stanza, visitor);
    if (rated) return rated;
  }
  // Kept messages still on their way to the agent go first: this one joins them, in order.
  if (session && hasBody && st.kept.has(visitor)) return keep(cx, w, stanza, visitor, []);

  const bodyId = ensureBodyId(stanza);
  const acked = bodyId ? [ack(visitor, bodyId, now)] : [];
  const extra: XmlElement[] = [];
  if (!session) {
    // Whoever waits longer goes first: serve the queue before this visitor.
    extra.push(...serveQueue(cx, w));
    session = st.sessions.get(visitor); // it was waiting and has just been served
    let key = '';
    if (!session) ({ session, key } = route(cx, w, stanza, visitor, extra));
    if (!session) return wait(cx, w, stanza, visitor, acked, extra, key);
    if (st.kept.has(visitor)) return keep(cx, w, stanza, visitor, extra); // re-queued earlier, now served: keep order
  }
  const relayed = relay(stanza, toAgent(session, now));
  const xml = serialize(relayed);
  if (session.agent === BOT) return drop([...acked, ...extra, ...(hasBody ? botTurn(cx, w, session, stanza, xml, bodyId!) : [])]);
  if (hasBody) w.do({ op: 'said', v: visitor, by: 'visitor', at: now, xml, text: bodyText(stanza) });
  return rewrite(relayed, [...acked, ...extra], xml);
}

/** Where a visitor without a session goes: the bot, a free agent of its groups, or else the queue of `key`. */
function route(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, extra: XmlElement[]): { session?: Session; key: string } {
  const st = w.state;
  if (st.queue.has(visitor)) return { key: st.queueGroup.get(visitor) ?? '' }; // already waiting: waits on
  const key = routeKey(cx.shop, productOf(stanza), (a) => cx.agentState(a).assignable);
  const mode = botModeOf(cx.shop, key);
  const human = asksForHuman(stanza);
  if (mode === 'bot-first' && !human) return { session: openBot(cx, w, visitor, key, extra), key };
  if (st.waitingFor(key) === 0) {
    const agent = choose(cx, st, visitor, undefined, key);
    if (agent) {
      w.do({ op: 'open', v: visitor, agent, at: cx.now, ...(key ? { g: key } : {}) });
      extra.push(welcome(cx, visitor));
      return { session: st.sessions.get(visitor), key };
    }
  }
  // Human first: the bot answers while no human can take the visitor.
  if (mode === 'human-first' && !human) return { session: openBot(cx, w, visitor, key, extra), key };
  return { key };
}

function openBot(cx: ShopContext, w: Changes, visitor: string, key: string, extra: XmlElement[]): Session {
  w.do({ op: 'open', v: visitor, agent: BOT, at: cx.now, ...(key ? { g: key } : {}) });
  extra.push(welcome(cx, visitor));
  return w.state.sessions.get(visitor)!;
}

const bodyText = (stanza: XmlElement) => textOf(findChild(stanza, 'body')!);

/** A plain "1".."5" from a visitor whose session just closed is its rating: acked and stored, never routed. */
function rate(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string): Decision | undefined {
  const due = w.state.ratingDue.get(visitor);
  if (!due || due.until <= cx.now) return undefined;
  const m = /^\s*([1-5])\s*$/.exec(bodyText(stanza));
  if (!m) return undefined;
  const score = Number(m[1]);
  w.do({ op: 'rate', v: visitor, score, at: cx.now });
  const text = render(cx.texts.ratingThanks, { score });
  const { shop, now } = cx;
  const thanks = notice({ shop: shop.jid, to: visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text });
  return drop([ack(visitor, ensureBodyId(stanza)!, now), thanks]);
}

/** No agent now: keep the message in the queue and tell the visitor where they stand. */
function wait(
  cx: ShopContext,
  w: Changes,
  stanza: XmlElement,
  visitor: string,
  acked: XmlElement[],
  extra: XmlElement[],
  key: string,
): Decision {
  const { shop, now } = cx;
  const st = w.state;
  const noAgent = () => autoReply({ shop: shop.jid, visitor, realfrom: shop.jid, text: shop.noAgentText, now });
  if (!shop.queueEnabled) return drop([...extra, noAgent()]); // not kept, so not acked
  const already = st.queue.has(visitor);
  if (!already && st.queue.size >= st.limits.queueMax) {
    return {
      ...reject('resource-constraint', 'wait', `${st.queue.size} visitors are already waiting for ${shop.jid}; please try again later`),
      extra,
    };
  }
  const xml = serialize(stanza);
  const refused = keptFull(st, visitor, xml);
  if (refused) return { ...refused, extra };
  if (!already) w.do({ op: 'enqueue', v: visitor, at: now, ...(key ? { g: key } : {}) });
  w.do({ op: 'keep', v: visitor, at: now, xml, text: bodyText(stanza) });
  if (already) return drop([...acked, ...extra]);
  const anyoneServing = [...cx.members.keys()].some((a) => cx.agentState(a).assignable);
  const told = anyoneServing
    ? notice({
        shop: shop.jid,
        to: visitor,
        realfrom: shop.jid,
        qchatid: QCHAT_TO_VISITOR,
        now,
        autoReply: true,
        text: render(cx.texts.queuePosition, { position: st.waitingFor(key) }),
      })
    : noAgent();
  return drop([...acked, ...extra, told]);
}

/** A message of a visitor whose earlier kept messages are still being released: it waits behind them. */
function keep(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, extra: XmlElement[]): Decision {
  const bodyId = ensureBodyId(stanza)!;
  const xml = serialize(stanza);
  const refused = keptFull(w.state, visitor, xml);
  if (refused) return { ...refused, extra };
  w.do({ op: 'keep', v: visitor, at: cx.now, xml, text: bodyText(stanza) });
  w.releases.add(visitor);
  return drop([ack(visitor, bodyId, cx.now), ...extra]);
}

/** Kept messages are bounded per visitor, in number and in size (a few stanzas near maxStanzaBytes fill it). */
function keptFull(st: ShopState, visitor: string, xml: string): Decision | undefined {
  const kept = st.kept.get(visitor) ?? [];
  if (kept.length >= st.limits.keptPerVisitor) {
    return reject(
      'resource-constraint',
      'wait',
      `${kept.length} of your messages are already waiting for an agent of ${st.shop}; please wait for a reply`,
    );
  }
  let bytes = xml.length;
  for (const m of kept) bytes += m.xml.length;
  if (bytes <= st.limits.keptBytesPerVisitor) return undefined;
  return reject(
    'resource-constraint',
    'wait',
    `your messages waiting for an agent of ${st.shop} would exceed ${st.limits.keptBytesPerVisitor} bytes; please wait for a reply`,
  );
}

// ---- agents --------------------------------------------------------------------

export function fromAgent(cx: ShopContext, w: Changes, stanza: XmlElement, agent: string, type: string): Decision {
  const { now } = cx;
  const found = servedVisitor(w.state, stanza, cx.shop, agent);
  if ('error' in found) {
    // Only content deserves an error; a stray typing notification is just dropped.
    return findChild(stanza, 'body') || type === 'readmark' ? { action: 'reject', error: found.error, extra: [] } : drop();
  }
  const session = found.session;
  if (type === 'readmark') return rewrite(relay(stanza, toVisitor(session, now), 'readmark'), []);
  const bodyId = ensureBodyId(stanza);
  const acked = bodyId ? [ack(agent, bodyId, now)] : [];
  const command = bodyId ? parseCommand(textOf(findChild(stanza, 'body')!), cx.shop.jid) : undefined;
  if (command) {
    try {
      const out =
        command.name === 'close'
          ? closeSession(cx, w, session, 'agent')
          : command.name === 'transfer-group'
            ? transferToGroup(cx, w, session, command.group, command.reason)
            : transferSession(cx, w, session, command.to, command.reason);
      return drop([...acked, ...out, ...serveQueue(cx, w)]);
    } catch (e) {
      if (e instanceof ConsultError) return { action: 'reject', error: e.error, extra: [] };
      throw e;
    }
  }
  const relayed = relay(stanza, toVisitor(session, now));
  const xml = serialize(relayed);
  if (bodyId) w.do({ op: 'said', v: session.visitor, by: 'agent', at: now, xml, text: bodyText(stanza) });
  return rewrite(relayed, acked, xml);
}

const LISTED_VISITORS = 20;

/** The visitor an agent's message is for: its realto, or its only session in the shop. Never a guess. */
function servedVisitor(st: ShopState, stanza: XmlElement, shop: Shop, agent: string): { session: Session } | { error: StanzaErrorInfo } {
  const realto = stanza.attrs.realto;
  if (realto) {
    const session = st.sessions.get(bareJid(realto));
    if (session?.agent === agent) return { session };
    return { error: { condition: 'forbidden', type: 'auth', text: `you are not serving ${bareJid(realto)} for ${shop.jid}` } };
  }
  const mine = st.byAgent.get(agent);
  if (mine?.size === 1) return { session: st.sessions.get(mine.values().next().value!)! };
  if (!mine?.size)
    return { error: { condition: 'item-not-found', type: 'cancel', text: `you have no open consult session for ${shop.jid}` } };
  const listed = [...mine].sort().slice(0, LISTED_VISITORS);
  const more = mine.size > LISTED_VISITORS ? `, and ${mine.size - LISTED_VISITORS} more` : '';
  return {
    error: {
      condition: 'not-acceptable',
      type: 'modify',
      text: `you serve ${mine.size} visitors of ${shop.jid}; set realto to one of: ${listed.join(', ')}${more}`,
    },
  };
}

// ---- the queue and assignment --------------------------------------------------

/** Assigns waiting visitors while agents have room; their kept messages follow once this is durable. */
export function serveQueue(cx: ShopContext, w: Changes): XmlElement[] {
  const st = w.state;
  const out: XmlElement[] = [];
  // Oldest first within each group key; a key nobody can serve now is skipped, so other groups' visitors move on.
  const full = new Set<string>();
  for (const visitor of st.queue.keys()) {
    const key = st.queueGroup.get(visitor) ?? '';
    if (full.has(key)) continue;
    const agent = choose(cx, st, visitor, undefined, key);
    if (!agent) {
      full.add(key);
      if (key === '' || full.size >= st.waiting.size) break;
      continue;
    }
    const past = st.history.get(visitor); // back from the bot (or an agent gone offline): the conversation so far
    w.do({ op: 'dequeue', v: visitor });
    w.do({ op: 'open', v: visitor, agent, at: cx.now, ...(key ? { g: key } : {}) });
    // A visitor back from the bot or from an agent gone offline was welcomed when its conversation began.
    if (past?.length) out.push(...handedOver(cx, visitor, agent, past));
    else out.push(welcome(cx, visitor));
    if (st.kept.has(visitor)) w.releases.add(visitor);
  }
  return out;
}

/** A visitor coming back from the bot: the human gets a notice and the conversation so far, marked as history. */
function handedOver(cx: ShopContext, visitor: string, agent: string, past: { at: number; xml: string }[]): XmlElement[] {
  const { shop, now } = cx;
  const text = render(cx.texts.botHistory, { visitor });
  return [
    notice({ shop: shop.jid, to: agent, realfrom: visitor, qchatid: QCHAT_TO_AGENT, now, text }),
    ...past.map((h) => replayed(h.xml, agent, h.at, shop.jid)),
  ];
}

function choose(cx: ShopContext, st: ShopState, visitor: string, exclude?: string, key = ''): string | undefined {
  const groups = groupsOf(cx.shop, key);
  const candidates = [];
  for (const m of cx.members.values()) {
    if (m.agent === exclude || !cx.agentState(m.agent).assignable) continue;
    const load = st.load(m.agent);
    if (load >= m.maxSessions || !groupAllows(groups, st, m.agent, key)) continue;
    candidates.push({ agent: m.agent, load, lastAssignedAt: st.lastAssigned.get(m.agent) ?? m.joinedAt });
  }
  const strategy = strategyOf(cx.shop, groups);
  const sticky = strategy === 'sticky' ? st.stickyAgent(visitor, cx.now) : undefined;
  return pickAgent(strategy, candidates, sticky, cx.random);
}

// ---- lifecycle -------------------------------------------------------------------

export function closeSession(cx: ShopContext, w: Changes, s: Session, reason: CloseReason): XmlElement[] {
  const { shop, now } = cx;
  // Closing would drop messages the visitor was told are kept: they reach the agent first.
  const unreleased = w.state.kept.get(s.visitor)?.length ?? 0;
  if (unreleased) {
    throw refuse(
      'resource-constraint',
      'wait',
      `${unreleased} messages of ${s.visitor} are still on their way to ${s.agent}; close again in a moment`,
    );
  }
  const windowMs = cx.config.archive.ratingWindowSec * 1000;
  w.do({
    op: 'close',
    v: s.visitor,
    stickyUntil: now + cx.config.timers.stickyTtlSec * 1000,
    at: now,
    reason,
    ...(windowMs ? { rateUntil: now + windowMs } : {}),
  });
  const t = cx.texts;
  const toVisitor = reason === 'idle' ? t.idleClosedToVisitor : t.closedToVisitor;
  const toAgent = render(reason === 'idle' ? t.idleClosedToAgent : t.closedToAgent, { visitor: s.visitor });
  const out = [notice({ shop: shop.jid, to: s.visitor, realfrom: s.agent, qchatid: QCHAT_TO_VISITOR, now, text: toVisitor })];
  if (s.agent !== BOT) out.push(notice({ shop: shop.jid, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, text: toAgent }));
  const session = w.state.ratingDue.get(s.visitor)?.id;
  if (session) {
    const n = { shop: shop.jid, to: s.visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text: t.ratingRequest };
    out.push(ratingRequest(n, session));
  }
  return out;
}

export function transferSession(cx: ShopContext, w: Changes, s: Session, toAgent: string, reason: string): XmlElement[] {
  const target = cx.members.get(toAgent);
  if (!target) throw refuse('item-not-found', 'cancel', `${toAgent} is not an agent of ${cx.shop.jid}`);
  if (toAgent === s.agent) throw refuse('conflict', 'cancel', `${toAgent} already serves ${s.visitor}`);
  if (!cx.agentState(toAgent).assignable) throw refuse('recipient-unavailable', 'wait', `${toAgent} is not available to take chats`);
  const load = w.state.load(toAgent);
  if (load >= target.maxSessions)
    throw refuse('resource-constraint', 'wait', `${toAgent} already has ${load} of ${target.maxSessions} sessions`);
  return handOver(cx, w, s, toAgent, reason);
}

/** A transfer to a group: whichever of its agents the group's strategy picks, if one has room now. */
export function transferToGroup(cx: ShopContext, w: Changes, s: Session, group: string, reason: string): XmlElement[] {
  if (!cx.shop.groups.some((g) => g.name === group)) throw refuse('item-not-found', 'cancel', `${group} is not a group of ${cx.shop.jid}`);
  const agent = choose(cx, w.state, s.visitor, s.agent, group);
  if (!agent) throw refuse('resource-constraint', 'wait', `no agent of group ${group} can take a chat now`);
  return handOver(cx, w, s, agent, reason, group);
}

/** Moves a session to another agent: notices to all three, the recent history replayed to the new agent. */
function handOver(cx: ShopContext, w: Changes, s: Session, toAgent: string, reason: string, group?: string): XmlElement[] {
  const { shop, now } = cx;
  const from = s.agent;
  w.do({ op: 'move', v: s.visitor, agent: toAgent, at: now, ...(group !== undefined ? { g: group } : {}), ...(reason ? { reason } : {}) });
  const t = cx.texts;
  const because = reason ? render(t.transferReason, { reason }) : '';
  const history = (w.state.history.get(s.visitor) ?? []).map((h) => replayed(h.xml, toAgent, h.at, shop.jid));
  const toOld = notice({
    shop: shop.jid,
    to: from,
    realfrom: s.visitor,
    qchatid: QCHAT_TO_AGENT,
    now,
    autoReply: true,
    text: render(t.transferToOldAgent, { visitor: s.visitor, to: toAgent }),
  });
  return [
    notice({
      shop: shop.jid,
      to: s.visitor,
      realfrom: toAgent,
      qchatid: QCHAT_TO_VISITOR,
      now,
      text: render(t.transferToVisitor, { from, to: toAgent }),
    }),
    ...(from === BOT ? [] : [toOld]),
    notice({
      shop: shop.jid,
      to: toAgent,
      realfrom: s.visitor,
      qchatid: QCHAT_TO_AGENT,
      now,
      text: render(t.transferToNewAgent, { from, visitor: s.visitor, reason: because }),
    }),
    ...history,
  ];
}

/** The agent stayed offline past the grace period: another agent takes over, or the visitor waits again. */
function rehome(cx: ShopContext, w: Changes, s: Session): XmlElement[] {
  const next = choose(cx, w.state, s.visitor, s.agent);
  if (next) return handOver(cx, w, s, next, render(cx.texts.agentOffline, { agent: s.agent }));
  const { shop, now } = cx;
  w.do({ op: 'requeue', v: s.visitor, at: now });
  const text = render(cx.texts.requeued, { position: w.state.queue.size, agent: s.agent });
  return [notice({ shop: shop.jid, to: s.visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text })];
}

/** Timers of one shop: offline agents' sessions, idle sessions, reminders; then the queue. */
export function runTimers(cx: ShopContext, w: Changes): XmlElement[] {
  const { agentReminderSec, idleCloseSec, offlineGraceSec } = cx.config.timers;
  const { now } = cx;
  const out: XmlElement[] = [];
  w.state.purgeSticky(now);
  w.state.purgeRatings(now);
  for (const s of [...w.state.sessions.values()]) {
    if (s.agent === BOT) {
      out.push(...botTimers(cx, w, s));
      continue;
    }
    if (!cx.agentState(s.agent).keepsSessions || !cx.members.has(s.agent)) {
      if (!s.orphanedAt) w.do({ op: 'orphan', v: s.visitor, at: now });
      else if (now - s.orphanedAt >= offlineGraceSec * 1000) out.push(...rehome(cx, w, s));
      continue;
    }
    if (s.orphanedAt) w.do({ op: 'orphan', v: s.visitor, at: 0 });
    const lastActivity = Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
    if (now - lastActivity >= idleCloseSec * 1000) {
      if (!w.state.kept.has(s.visitor)) out.push(...closeSession(cx, w, s, 'idle')); // else: after the release
    } else if (s.lastVisitorAt > s.lastAgentAt && s.remindedAt < s.lastVisitorAt && now - s.lastVisitorAt >= agentReminderSec * 1000) {
      w.do({ op: 'remind', v: s.visitor, at: now });
      const text = render(cx.texts.reminder, { visitor: s.visitor, seconds: Math.round((now - s.lastVisitorAt) / 1000) });
      out.push(notice({ shop: cx.shop.jid, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, text }));
    }
  }
  out.push(...serveQueue(cx, w));
  return out;
}

/** A bot session: a question left unanswered past the bot's whole budget goes to a human; idle ones close. */
function botTimers(cx: ShopContext, w: Changes, s: Session): XmlElement[] {
  const { now } = cx;
  if (s.lastVisitorAt > s.lastAgentAt && now - s.lastVisitorAt >= botBudgetMs(cx)) return botFailed(cx, w, s.visitor);
  const lastActivity = Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
  return now - lastActivity >= cx.config.timers.idleCloseSec * 1000 ? closeSession(cx, w, s, 'idle') : [];
}

// ---- helpers -----------------------------------------------------------------------

function welcome(cx: ShopContext, visitor: string): XmlElement {
  return autoReply({ shop: cx.shop.jid, visitor, realfrom: cx.config.systemJid, text: cx.shop.welcome, now: cx.now });
}

export function toAgent(s: Session, now: number) {
  return { shop: s.shop, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now };
}

function toVisitor(s: Session, now: number) {
  return { shop: s.shop, to: s.visitor, realfrom: s.agent, qchatid: QCHAT_TO_VISITOR, now };
}

const replayed = (xml: string, to: string, at: number, shop: string) => replay(parseElement(xml), to, at, shop);

/** A readmark or other stanza straight between two users: realfrom/realto are the server's to set. */
export function passThrough(stanza: XmlElement): Decision {
  return 'realfrom' in stanza.attrs || 'realto' in stanza.attrs ? rewrite(withoutRealAddresses(stanza), []) : PASS;
}

/** `/status dnd|standard|always-on`; anything else is an ordinary message. */
export function statusCommand(stanza: XmlElement): AgentStatus | undefined {
  const body = findChild(stanza, 'body');
  const m = body && /^\/status\s+(\S+)\s*$/.exec(textOf(body).trim());
  return m && AGENT_STATUSES.includes(m[1] as AgentStatus) ? (m[1] as AgentStatus) : undefined;
}

/** Agent commands any XMPP client can type: `/close` (or `/end`), `/transfer <agent>|#<group> [reason]`. */
export function parseCommand(
  text: string,
  shopJid: string,
):
  | { name: 'close' }
  | { name: 'transfer'; to: string; reason: string }
  | { name: 'transfer-group'; group: string; reason: string }
  | undefined {
  const m = /^\/(close|end|transfer)(?:\s+(\S+))?(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (!m) return undefined;
  if (m[1] !== 'transfer') return { name: 'close' };
  if (!m[2]) return undefined;
  if (m[2].startsWith('#') && m[2].length > 1) return { name: 'transfer-group', group: m[2].slice(1), reason: (m[3] ?? '').trim() };
  const to = m[2].includes('@') ? bareJid(m[2]) : `${m[2].toLowerCase()}@${shopJid.split('@')[1]}`;
  return { name: 'transfer', to, reason: (m[3] ?? '').trim() };
}
