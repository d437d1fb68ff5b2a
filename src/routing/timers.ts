// Timers of one shop, run every tick: offline agents' sessions, idle sessions, reminders, bot questions left unanswered.
import { QCHAT_TO_AGENT, notice } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import { botBudgetMs, botFailed } from './bot.js';
import { BOT, arrivalOf, type Session } from './state.js';
import { render } from '../domain/texts.js';
import type { ShopContext, Changes } from './changes.js';
import { rehome, closeSession } from './session.js';
import { serveQueue } from './queue.js';
import { waitingTimers } from './left.js';
import { moveOnIfUnanswered } from './answer.js';
import { isSupervisor } from './supervisor.js';

/** Timers of one shop: offline agents' sessions, idle sessions, reminders; then the queue. */
export function runTimers(cx: ShopContext, w: Changes): XmlElement[] {
  const { agentReminderSec, idleCloseSec, offlineGraceSec } = cx.config.timers;
  const { now } = cx;
  const out: XmlElement[] = [];
  const gone: Session[] = []; // their agent stayed offline past the grace period
  w.state.purgeSticky(now);
  w.state.purgeRatings(now);
  for (const s of [...w.state.sessions.values()]) {
    if (s.agent === BOT) {
      out.push(...botTimers(cx, w, s));
      continue;
    }
    // A supervisor who took a session over serves it like an agent of the shop.
    if (!cx.agentState(s.agent).keepsSessions || !(cx.members.has(s.agent) || isSupervisor(cx.shop, s.agent))) {
      if (!s.orphanedAt) w.do({ op: 'orphan', v: s.visitor, at: now });
      else if (now - s.orphanedAt >= offlineGraceSec * 1000) gone.push(s);
      continue;
    }
    if (s.orphanedAt) w.do({ op: 'orphan', v: s.visitor, at: 0 });
    const lastActivity = Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
    // Answer or move on: an agent that let its answer clock run out loses the visitor to the next agent.
    const movedOn = now - lastActivity < idleCloseSec * 1000 ? moveOnIfUnanswered(cx, w, s) : [];
    if (movedOn.length) {
      out.push(...movedOn);
    } else if (now - lastActivity >= idleCloseSec * 1000) {
      if (!w.state.kept.has(s.visitor)) out.push(...closeSession(cx, w, s, 'idle')); // else: after the release
    } else if (s.lastVisitorAt > s.lastAgentAt && s.remindedAt < s.lastVisitorAt && now - s.lastVisitorAt >= agentReminderSec * 1000) {
      w.do({ op: 'remind', v: s.visitor, at: now });
      const text = render(cx.texts.reminder, { visitor: s.visitor, seconds: Math.round((now - s.lastVisitorAt) / 1000) });
      out.push(notice({ shop: cx.shop.jid, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, text }));
    }
  }
  // First come, first served: the earliest arrival gets a free agent first, and each requeued visitor's notice
  // names a place no visitor requeued after it in this tick can take.
  gone.sort((a, b) => arrivalOf(a) - arrivalOf(b) || (a.visitor < b.visitor ? -1 : 1));
  for (const s of gone) out.push(...rehome(cx, w, s));
  out.push(...serveQueue(cx, w));
  out.push(...waitingTimers(cx, w)); // waits that end, left messages handed out (src/routing/left.ts)
  return out;
}

/** A bot session: a question left unanswered past the bot's whole budget goes to a human; idle ones close. */
function botTimers(cx: ShopContext, w: Changes, s: Session): XmlElement[] {
  const { now } = cx;
  if (s.lastVisitorAt > s.lastAgentAt && now - s.lastVisitorAt >= botBudgetMs(cx)) return botFailed(cx, w, s.visitor);
  const lastActivity = Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
  return now - lastActivity >= cx.config.timers.idleCloseSec * 1000 ? closeSession(cx, w, s, 'idle') : [];
}
