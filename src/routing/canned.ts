// Canned replies from any XMPP client (the commands: src/routing/commands.ts; the replies: src/domain/canned.ts).
// `#name` (or `/reply name`) becomes the agent's own message with the shop's text as its body: src/routing/agent.ts
// relays it like any agent line (same attributes, the agent's body id, msgType 1), journaled `said` and archived.
// An unknown name is refused, naming the close ones; `/canned` lists the replies to the agent alone.
import { cannedFor, closeNames, fillCanned, visitorName } from '../domain/canned.js';
import { type Decision, drop, reject } from '../domain/decision.js';
import { render } from '../domain/texts.js';
import { QCHAT_TO_AGENT, ack, ensureBodyId, notice } from '../xmpp/stanzas.js';
import { cloneNode, findChild, type XmlElement } from '../xmpp/xml.js';
import type { ShopContext } from './changes.js';
import type { Session } from './state.js';

/** At most this many replies are listed by /canned (with their texts cut to LISTED_CHARS). */
export const LISTED_REPLIES = 100;
const LISTED_CHARS = 60;

/**
 * The agent's message with the canned reply as its body, or the refusal of a name the session cannot use. `named`:
 * the visitor's name, when its context gave one ({visitor} is else its JID's local part).
 */
export function withCannedBody(cx: ShopContext, stanza: XmlElement, s: Session, name: string, named?: string): XmlElement | Decision {
  const replies = cannedFor(cx.shop, s.group);
  const text = replies[name];
  if (text === undefined) {
    const close = closeNames(name, Object.keys(replies));
    const hint = close.length
      ? `; did you mean ${close.map((n) => `#${n}`).join(', ')}?`
      : Object.keys(replies).length
        ? '; /canned lists them'
        : '';
    return reject('item-not-found', 'cancel', `${cx.shop.jid} has no canned reply #${name}${hint}`);
  }
  const filled = fillCanned(text, {
    visitor: visitorName(s.visitor, named),
    agent: visitorName(s.agent),
    shop: cx.shop.name,
  });
  const out = cloneNode(stanza);
  const body = findChild(out, 'body')!;
  body.children = [filled];
  body.attrs.msgType = '1';
  return out;
}

/** `/canned`: the names and the start of each text, to the agent alone (those of its session's groups when it has one). */
export function listCanned(cx: ShopContext, stanza: XmlElement, agent: string, s: Session | undefined): Decision {
  const replies = Object.entries(cannedFor(cx.shop, s?.group)).sort(([a], [b]) => (a < b ? -1 : 1));
  const cut = (t: string) => (t.length > LISTED_CHARS ? `${t.slice(0, LISTED_CHARS - 1)}…` : t);
  const text = replies.length
    ? [
        render(cx.texts.cannedList, { count: replies.length }),
        ...replies.slice(0, LISTED_REPLIES).map(([n, t]) => `#${n} — ${cut(t.replace(/\s+/g, ' '))}`),
      ].join('\n')
    : cx.texts.cannedNone;
  const told = notice({ shop: cx.shop.jid, to: agent, realfrom: cx.shop.jid, qchatid: QCHAT_TO_AGENT, now: cx.now, text });
  return drop([ack(agent, ensureBodyId(stanza)!, cx.now), told]);
}
