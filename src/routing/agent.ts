
import { type Shop } from '../domain/shop.js';
import { bareJid } from '../xmpp/jid.js';
import {
  ack,
  ensureBodyId,
  relay,
} from '../xmpp/stanzas.js';
import { findChild, serialize, textOf, type XmlElement } from '../xmpp/xml.js';
import { type Session, type ShopState, } from './state.js';
import { type StanzaErrorInfo, ConsultError, type Decision, } from '../domain/decision.js';
import { type ShopContext, Changes } from './changes.js';
import { drop, rewrite } from '../domain/decision.js';
import { toVisitor, bodyText } from './replies.js';
import { parseCommand } from './commands.js';
import { closeSession, transferToGroup, transferSession } from './session.js';
import { serveQueue } from './queue.js';

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
