// A session's lifecycle: closing it, and moving it to another agent (a transfer, or its agent gone offline).
import { QCHAT_TO_AGENT, QCHAT_TO_VISITOR, notice, ratingRequest } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import type { CloseReason } from '../domain/archive.js';
import { BOT, arrivalOf, type Session } from './state.js';
import { render } from '../domain/texts.js';
import type { ShopContext, Changes } from './changes.js';
import { refuse } from '../domain/decision.js';
import { chooseAgent } from './assign.js';
import { answerClock } from './groups.js';
import { replayed } from './replies.js';
import { contextNotice } from './context.js';

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
  const agent = chooseAgent(cx, w.state, s.visitor, s.agent, group);
  if (!agent) throw refuse('resource-constraint', 'wait', `no agent of group ${group} can take a chat now`);
  return handOver(cx, w, s, agent, reason, { group });
}

/** How a hand-over differs from a transfer: its group, and (answer or move on) a missed chat with its own notices. */
export interface HandOverOptions {
  group?: string;
  /** The agent it leaves did not answer in time. */
  missed?: true;
  /** The visitor's notice instead of transferToVisitor; null: the visitor is not told. */
  toVisitor?: string | null;
  /** The old agent's notice instead of transferToOldAgent. */
  toOldAgent?: string;
}

/** Moves a session to another agent: notices to all three, the recent history replayed to the new agent. */
export function handOver(cx: ShopContext, w: Changes, s: Session, toAgent: string, reason: string, o: HandOverOptions = {}): XmlElement[] {
  const { shop, now } = cx;
  const { group } = o;
  const from = s.agent;
  w.do({
    op: 'move',
    v: s.visitor,
    agent: toAgent,
    at: now,
    ...(group !== undefined ? { g: group } : {}),
    ...(reason ? { reason } : {}),
    ...answerClock(shop, toAgent, group ?? s.group ?? ''),
    ...(o.missed ? { missed: true } : {}),
  });
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
    text: o.toOldAgent ?? render(t.transferToOldAgent, { visitor: s.visitor, to: toAgent }),
  });
  const toVisitor = o.toVisitor === undefined ? render(t.transferToVisitor, { from, to: toAgent }) : o.toVisitor;
  return [
    ...(toVisitor === null
      ? []
      : [notice({ shop: shop.jid, to: s.visitor, realfrom: toAgent, qchatid: QCHAT_TO_VISITOR, now, text: toVisitor })]),
    ...(from === BOT ? [] : [toOld]),
    notice({
      shop: shop.jid,
      to: toAgent,
      realfrom: s.visitor,
      qchatid: QCHAT_TO_AGENT,
      now,
      text: render(t.transferToNewAgent, { from, visitor: s.visitor, reason: because }),
    }),
    ...contextNotice(cx, w.state, s.visitor, toAgent),
    ...history,
  ];
}

/**
 * The agent stayed offline past the grace period: another agent takes over, or the visitor waits again at its
 * place by arrival, ahead of those who came after it, and is told that place.
 */
export function rehome(cx: ShopContext, w: Changes, s: Session): XmlElement[] {
  const next = chooseAgent(cx, w.state, s.visitor, s.agent);
  if (next) return handOver(cx, w, s, next, render(cx.texts.agentOffline, { agent: s.agent }));
  const { shop, now } = cx;
  w.do({ op: 'requeue', v: s.visitor, at: now, since: arrivalOf(s) });
  const text = render(cx.texts.requeued, { position: w.state.positionOf(s.visitor), agent: s.agent });
  return [notice({ shop: shop.jid, to: s.visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text })];
}
