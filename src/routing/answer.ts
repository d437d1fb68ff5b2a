// Answer or move on. An agent given a session (a new visitor, a transfer, a visitor from the queue) starts an answer
// clock when the shop (or the session's group) sets `answerTimeoutSec`; its first message to the visitor stops it
// (apply() of `said`). A clock that runs out moves the session, as a transfer does, to the next agent the strategy
// picks (never the same one): the visitor is told once per session, the old agent is told, and the miss counts
// against it. `maxMissedChats` misses in a row set the agent away until it sets its status again. With nobody to take
// the session it stays, and the agent keeps being reminded (src/routing/timers.ts). Run by the timers, every tick.
import { QCHAT_TO_AGENT, notice } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import { render } from '../domain/texts.js';
import type { Changes, ShopContext } from './changes.js';
import { chooseAgent } from './assign.js';
import { answerTimeoutOf } from './groups.js';
import { handOver } from './session.js';
import { BOT, type Session } from './state.js';

/** A session whose agent's clock ran out moves on; nothing when no clock runs out now or nobody else can take it. */
export function moveOnIfUnanswered(cx: ShopContext, w: Changes, s: Session): XmlElement[] {
  if (s.answerClockAt === undefined || s.agent === BOT) return [];
  const key = s.group ?? '';
  const seconds = answerTimeoutOf(cx.shop, key);
  if (seconds <= 0 || cx.now - s.answerClockAt < seconds * 1000) return [];
  // Kept messages still on their way to this agent would be relayed to it after the move: after the release.
  if (w.state.kept.has(s.visitor)) return [];
  const next = chooseAgent(cx, w.state, s.visitor, s.agent, key);
  if (!next) return [];
  const { texts: t } = cx;
  const from = s.agent;
  const out = handOver(cx, w, s, next, render(t.answerTimeoutReason, { agent: from, seconds }), {
    missed: true,
    toVisitor: s.silentMoves ? null : render(t.answerTimeoutToVisitor, { from, to: next }),
    toOldAgent: render(t.answerTimeoutToAgent, { visitor: s.visitor, to: next, seconds }),
  });
  return [...out, ...awayIfMissedTooOften(cx, w, from)];
}

/** `maxMissedChats` missed in a row: the agent is set away once this is durable, and told why. */
function awayIfMissedTooOften(cx: ShopContext, w: Changes, agent: string): XmlElement[] {
  const max = cx.shop.maxMissedChats ?? 0;
  const inRow = w.state.missed.get(agent)?.inRow ?? 0;
  if (max <= 0 || inRow < max) return [];
  w.do({ op: 'away', agent, at: cx.now });
  // Already not taking chats (dnd, or away from another shop): its own choice stands.
  const status = cx.agentStatus(agent);
  if (status === 'dnd' || status === 'away' || w.statuses.some((x) => x.agent === agent)) return [];
  w.statuses.push({ agent, status: 'away' });
  const text = render(cx.texts.awayAfterMissed, { count: inRow });
  return [notice({ shop: cx.shop.jid, to: agent, realfrom: cx.shop.jid, qchatid: QCHAT_TO_AGENT, now: cx.now, text })];
}
