// Bot-first routing, decided like everything else: synchronously over the shop's state. A bot
// session is a session whose agent is BOT. The decision only records what the visitor asked
// (Changes.asks); the desk calls the webhook afterwards and feeds the answer, or the failure,
// back as a new decision (botAnswered / botFailed). The visitor may ask for a human at any time:
// the session goes back to the queue with its history, which the human then receives.
import { QCHAT_TO_VISITOR, botReply, notice } from '../xmpp/stanzas.js';
import { findChild, serialize, textOf, type XmlElement } from '../xmpp/xml.js';
import type { Changes, ShopContext } from './changes.js';
import { serveQueue } from './queue.js';
import { BOT, type Session } from './state.js';
import { bodyFacts } from '../xmpp/message-kind.js';

/** QChat clients send msgType 65537 ("turn to human"); any client can type one of these words. */
const HUMAN_WORDS = new Set(['人工', '转人工', '人工客服', '/human', 'human', 'agent']);
export const TURN_TO_HUMAN = '65537';

export function asksForHuman(stanza: XmlElement): boolean {
  const body = findChild(stanza, 'body');
  if (!body) return false;
  return body.attrs.msgType === TURN_TO_HUMAN || HUMAN_WORDS.has(textOf(body).trim().toLowerCase());
}

/** A visitor message in a bot session: recorded, and either handed to a human or asked of the bot. */
export function botTurn(cx: ShopContext, w: Changes, s: Session, stanza: XmlElement, xml: string, bodyId: string): XmlElement[] {
  const body = findChild(stanza, 'body')!;
  const text = textOf(body);
  w.do({ op: 'said', v: s.visitor, by: 'visitor', at: cx.now, xml, text, ...bodyFacts(stanza) });
  if (asksForHuman(stanza)) return toHuman(cx, w, s, false);
  w.asks.push({ visitor: s.visitor, id: bodyId, text, msgType: body.attrs.msgType ?? '1' });
  return [];
}

export function botAnswered(cx: ShopContext, w: Changes, visitor: string, answer: { text?: string; handover?: boolean }): XmlElement[] {
  const s = w.state.sessions.get(visitor);
  if (s?.agent !== BOT) return []; // the visitor went to a human or the session closed meanwhile
  if (answer.handover) return toHuman(cx, w, s, false);
  if (!answer.text) return [];
  const { shop, now } = cx;
  const reply = botReply({ shop: shop.jid, to: visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, text: answer.text });
  const xml = serialize(reply);
  // Built from what an outside server said: checked before anything of it is recorded or sent.
  if (Buffer.byteLength(xml, 'utf8') > cx.config.maxStanzaBytes)
    return toHuman(cx, w, s, true, 'the bot answer was larger than maxStanzaBytes: to a human');
  w.do({ op: 'said', v: visitor, by: 'agent', at: now, xml, text: answer.text });
  return [reply];
}

/** The bot did not answer (timeouts, errors, retries spent): a human takes over, the visitor is told. */
export function botFailed(cx: ShopContext, w: Changes, visitor: string): XmlElement[] {
  const s = w.state.sessions.get(visitor);
  return s?.agent === BOT ? toHuman(cx, w, s, true) : [];
}

/** How long a question may stay unanswered before the timers hand the visitor over (a call lost in a restart). */
export function botBudgetMs(cx: ShopContext): number {
  const { timeoutMs, retries } = cx.shop.bot;
  return 2 * timeoutMs * (retries + 1) + 5000;
}

function toHuman(cx: ShopContext, w: Changes, s: Session, failed: boolean, note?: string): XmlElement[] {
  const { shop, now } = cx;
  const tell = (text: string) =>
    notice({ shop: shop.jid, to: s.visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text });
  w.do({
    op: 'requeue',
    v: s.visitor,
    at: now,
    note: note ?? (failed ? 'the bot did not answer: to a human' : 'the visitor asked for a human'),
  });
  const out = [tell(failed ? cx.texts.botFailed : cx.texts.toHuman), ...serveQueue(cx, w)];
  // Still waiting with nobody on duty at all: say so, as for any visitor.
  const anyone = [...cx.members.keys()].some((a) => cx.agentState(a).assignable);
  if (w.state.queue.has(s.visitor) && !anyone) out.push(tell(shop.noAgentText));
  return out;
}
