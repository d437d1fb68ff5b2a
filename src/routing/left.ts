// Left messages: what a visitor writes while nobody will serve it is kept (and acked) until an agent can take it.
// A visitor gets one when the shop (or its groups) is closed, when it waited in the queue past the queue's maximum
// (`queueMaxWaitSec`), or when it leaves the queue with a word ("/leave", "退出排队", "取消排队"); the last two are
// abandoned waits, counted per reason and group in the state (`abandoned`). Left messages are handed out by the timers
// once the hours are open, oldest first, after the queue: at most one to each agent per tick, chosen by the strategy
// among those with room, so the night's backlog spreads over the agents signing in instead of filling the first one.
// The agent gets a notice (leftToAgent) and the kept messages in order, released like a served visitor's.
import { localTime } from '../domain/hours.js';
import type { Decision } from '../domain/decision.js';
import { drop } from '../domain/decision.js';
import { render } from '../domain/texts.js';
import { QCHAT_TO_AGENT, QCHAT_TO_VISITOR, notice } from '../xmpp/stanzas.js';
import { el, findChild, serialize, textOf, type XmlElement } from '../xmpp/xml.js';
import { chooseAgent } from './assign.js';
import type { Changes, ShopContext } from './changes.js';
import { answerClock, productOf } from './groups.js';
import { keptFull, waitingFull } from './kept.js';
import { handOutKey, hoursKey, isOpen, localTimeFor, maxWaitOf, opensNext } from './opening.js';
import { bodyText, replayed, welcome } from './replies.js';
import type { LeftMessage, LeftReason } from './state.js';
import { contextNotice } from './context.js';
import { bodyFacts } from '../xmpp/message-kind.js';

/** The child of every left-message notice: why, and for `closed` when the shop opens (ms) in which zone. */
export const NS_LEFT = 'urn:xmpp:consult:left:0';
/** Bodies a waiting visitor sends to leave the queue (its messages are kept as a left message). */
export const LEAVE_WORDS: ReadonlySet<string> = new Set(['/leave', '退出排队', '取消排队']);

const wantsToLeave = (stanza: XmlElement) => {
  const body = findChild(stanza, 'body');
  return body !== undefined && LEAVE_WORDS.has(textOf(body).trim().toLowerCase());
};

/**
 * A visitor message before routing (the visitor has no session): kept with its left message while the hours are
 * closed (or taken back out of it when they are open), a new left message outside the hours, or the queue left by a
 * word. Undefined: route it as usual.
 */
export function leftMessage(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, acked: XmlElement[]): Decision | undefined {
  const st = w.state;
  const { shop, now } = cx;
  const left = st.left.get(visitor);
  if (left) {
    // Back while open: the visitor is routed again, its left messages first (they stay kept, in order).
    if (isOpen(shop, left.g, now)) {
      w.do({ op: 'pickup', v: visitor });
      return undefined;
    }
    return keepAs(cx, w, stanza, visitor, acked);
  }
  if (st.queue.has(visitor)) {
    const key = st.queueGroup.get(visitor) ?? '';
    if (wantsToLeave(stanza)) {
      w.do({ op: 'leave', v: visitor, at: now, reason: 'left' });
      return drop([...acked, visitorNotice(cx, visitor, 'left', key)]);
    }
    if (isOpen(shop, key, now)) return undefined;
    // Its hours closed while it waited: this message joins the others and they all wait as a left message.
    const kept = keepAs(cx, w, stanza, visitor, acked);
    if (kept.action !== 'reject') {
      w.do({ op: 'leave', v: visitor, at: now, reason: 'closed' });
      kept.extra.push(visitorNotice(cx, visitor, 'closed', key));
    }
    return kept;
  }
  const key = hoursKey(shop, productOf(stanza));
  if (isOpen(shop, key, now)) return undefined;
  const full = waitingFull(st, 'write again');
  if (full) return full;
  const refused = keptFull(st, visitor, serialize(stanza));
  if (refused) return refused;
  w.do({ op: 'leave', v: visitor, at: now, reason: 'closed', ...(key ? { g: key } : {}) });
  const kept = keepAs(cx, w, stanza, visitor, acked);
  kept.extra.push(visitorNotice(cx, visitor, 'closed', key));
  return kept;
}

/** Kept (and acked) for the visitor's left message or queue place, within the kept-message bounds. */
function keepAs(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, acked: XmlElement[]): Decision {
  const xml = serialize(stanza);
  const refused = keptFull(w.state, visitor, xml);
  if (refused) return refused;
  w.do({ op: 'keep', v: visitor, at: cx.now, xml, text: bodyText(stanza), ...bodyFacts(stanza) });
  return drop([...acked]);
}

/** Timers: waiting visitors whose hours closed or whose wait ran past the maximum leave the queue; left messages go out. */
export function waitingTimers(cx: ShopContext, w: Changes): XmlElement[] {
  const st = w.state;
  const { shop, now } = cx;
  const opened = new Map<string, boolean>();
  const open = (key: string) => {
    let o = opened.get(key);
    if (o === undefined) opened.set(key, (o = isOpen(shop, key, now)));
    return o;
  };
  const out: XmlElement[] = [];
  const fresh = new Set<string>(); // left the queue just now: handed out from the next run on
  for (const [visitor, since] of [...st.queue]) {
    const key = st.queueGroup.get(visitor) ?? '';
    const maxWait = maxWaitOf(shop, key);
    // Its wait this time: since it joined the queue (a requeued visitor's place is older than that).
    const joined = st.transcripts.get(visitor)?.queuedAt ?? since;
    const reason: LeftReason | undefined = !open(key) ? 'closed' : maxWait > 0 && now - joined >= maxWait * 1000 ? 'timeout' : undefined;
    if (!reason) continue;
    w.do({ op: 'leave', v: visitor, at: now, reason });
    fresh.add(visitor);
    out.push(visitorNotice(cx, visitor, reason, key));
  }
  out.push(...handOut(cx, w, (key) => open(key), fresh));
  return out;
}

/** Left messages of open keys, oldest first, to agents with room: at most one each per run. */
function handOut(cx: ShopContext, w: Changes, open: (key: string) => boolean, fresh: ReadonlySet<string>): XmlElement[] {
  const st = w.state;
  if (st.left.size === 0) return [];
  const given = new Set<string>();
  const once: ShopContext = {
    ...cx,
    agentState: (a) => (given.has(a) ? { ...cx.agentState(a), assignable: false } : cx.agentState(a)),
  };
  const full = new Set<string>();
  const out: XmlElement[] = [];
  for (const [visitor, l] of [...st.left]) {
    if (fresh.has(visitor) || !open(l.g)) continue;
    const key = handOutKey(cx.shop, l.g, (a) => cx.agentState(a).assignable);
    if (full.has(key)) continue;
    // Visitors waiting live for the same agents go first.
    const agent = st.waitingFor(key) ? undefined : chooseAgent(once, st, visitor, undefined, key);
    if (!agent) {
      full.add(key);
      continue;
    }
    given.add(agent);
    out.push(...handTo(cx, w, visitor, l, agent, key));
  }
  return out;
}

function handTo(cx: ShopContext, w: Changes, visitor: string, l: LeftMessage, agent: string, key: string): XmlElement[] {
  const { shop, now } = cx;
  const past = w.state.history.get(visitor); // it had been served before it waited: the conversation so far
  w.do({ op: 'pickup', v: visitor });
  w.do({ op: 'open', v: visitor, agent, at: now, since: l.at, ...(key ? { g: key } : {}), ...answerClock(shop, agent, key) });
  if (w.state.kept.has(visitor)) w.releases.add(visitor);
  const text = render(cx.texts.leftToAgent, { visitor, leftAt: localTimeFor(shop, l.g, l.at) });
  const told = notice({ shop: shop.jid, to: agent, realfrom: visitor, qchatid: QCHAT_TO_AGENT, now, text });
  told.children.push(el('left', { xmlns: NS_LEFT, reason: l.reason, at: String(l.at) }));
  return [
    told,
    ...contextNotice(cx, w.state, visitor, agent),
    ...(past?.length ? past.map((h) => replayed(h.xml, agent, h.at, shop.jid)) : [welcome(cx, visitor)]),
  ];
}

/** What the visitor is told when its messages become a left message. */
function visitorNotice(cx: ShopContext, visitor: string, reason: LeftReason, key: string): XmlElement {
  const { shop, now, texts } = cx;
  const attrs: Record<string, string> = { xmlns: NS_LEFT, reason };
  let text = reason === 'timeout' ? texts.queueTimeout : texts.queueLeft;
  if (reason === 'closed') {
    const next = opensNext(shop, key, now);
    text = next ? render(texts.closed, { opensAt: localTime(next.zone, next.at), timeZone: next.zone }) : texts.closedNoOpening;
    if (next) Object.assign(attrs, { opens: String(next.at), zone: next.zone });
  }
  const told = notice({ shop: shop.jid, to: visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text });
  told.children.push(el('left', attrs));
  return told;
}
