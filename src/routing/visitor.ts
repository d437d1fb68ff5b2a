// Messages from visitors: a session's relay to its agent, routing of a new visitor (bot, a free agent of its
// groups, or the queue), ratings, and messages kept while the visitor waits.
//
// Every decision in src/routing/ is synchronous over one shop's in-memory state: it reads indexes, records its
// changes through a Changes writer (which applies them at once) and returns the verdict. The desk makes the
// changes durable before the verdict leaves (src/desk/journal.ts).
import { QCHAT_TO_VISITOR, ack, autoReply, ensureBodyId, notice, relay } from '../xmpp/stanzas.js';
import { findChild, serialize, type XmlElement } from '../xmpp/xml.js';
import { asksForHuman, botTurn } from './bot.js';
import { answerClock, botModeOf, productOf, routeKey } from './groups.js';
import { BOT, type Session } from './state.js';
import { render } from '../domain/texts.js';
import type { Decision } from '../domain/decision.js';
import type { ShopContext, Changes } from './changes.js';
import { rewrite, drop } from '../domain/decision.js';
import { toAgent, bodyText, welcome } from './replies.js';
import { serveQueue } from './queue.js';
import { chooseAgent } from './assign.js';
import { keptFull, waitingFull } from './kept.js';
import { leftMessage } from './left.js';
import { supervisorCommand } from './commands.js';
import { monitorCopies, notSupervisor } from './supervisor.js';
import { contextOf, withoutContext } from '../domain/context.js';
import { noteContext } from './context.js';
import { visitorRevoke } from './revoke.js';
import { bodyFacts } from '../xmpp/message-kind.js';

export function fromVisitor(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, type: string): Decision {
  // Context the visitor's client sent goes on the transcript, not to the agent as it was written (src/routing/context.ts).
  const sent = type === 'readmark' ? undefined : contextOf(stanza);
  if (!sent) return decide(cx, w, stanza, visitor, type);
  return noteContext(cx, w, visitor, sent, decide(cx, w, withoutContext(stanza), visitor, type));
}

function decide(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string, type: string): Decision {
  const st = w.state;
  const { now } = cx;
  let session = st.sessions.get(visitor);
  const hasBody = findChild(stanza, 'body') !== undefined;

  if (type === 'readmark') {
    return session && session.agent !== BOT ? rewrite(relay(stanza, toAgent(session, now), 'readmark'), []) : drop();
  }
  if (type === 'revoke') return visitorRevoke(cx, w, stanza, visitor);
  // A visitor is no supervisor (supervisors' messages are decided with the agents').
  if (supervisorCommand(stanza, cx.shop.jid)) return notSupervisor(cx);
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
    // Outside opening hours, with a left message waiting, or a word to leave the queue (src/routing/left.ts).
    const left = leftMessage(cx, w, stanza, visitor, acked);
    if (left) return left;
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
  if (hasBody) w.do({ op: 'said', v: visitor, by: 'visitor', at: now, xml, text: bodyText(stanza), ...bodyFacts(stanza) });
  return rewrite(relayed, [...acked, ...extra, ...monitorCopies(session, relayed, 'visitor')], xml);
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
    const agent = chooseAgent(cx, st, visitor, undefined, key);
    if (agent) {
      w.do({ op: 'open', v: visitor, agent, at: cx.now, ...(key ? { g: key } : {}), ...answerClock(cx.shop, agent, key) });
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
  const full = already ? undefined : waitingFull(st, 'try again'); // the queue and left messages
  if (full) return { ...full, extra };
  const xml = serialize(stanza);
  const refused = keptFull(st, visitor, xml);
  if (refused) return { ...refused, extra };
  if (!already) w.do({ op: 'enqueue', v: visitor, at: now, ...(key ? { g: key } : {}) });
  w.do({ op: 'keep', v: visitor, at: now, xml, text: bodyText(stanza), ...bodyFacts(stanza) });
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
  w.do({ op: 'keep', v: visitor, at: cx.now, xml, text: bodyText(stanza), ...bodyFacts(stanza) });
  w.releases.add(visitor);
  return drop([ack(visitor, bodyId, cx.now), ...extra]);
}
