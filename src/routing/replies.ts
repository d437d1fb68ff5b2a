// Addressing and texts shared by the decisions: who a relayed stanza goes to, the welcome, replayed history.
import { QCHAT_TO_AGENT, QCHAT_TO_VISITOR, autoReply, replay } from '../xmpp/stanzas.js';
import { findChild, parseElement, textOf, type XmlElement } from '../xmpp/xml.js';
import type { Session } from './state.js';
import type { ShopContext } from './changes.js';

export function welcome(cx: ShopContext, visitor: string): XmlElement {
  return autoReply({ shop: cx.shop.jid, visitor, realfrom: cx.config.systemJid, text: cx.shop.welcome, now: cx.now });
}

export function toAgent(s: Session, now: number) {
  return { shop: s.shop, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now };
}

export function toVisitor(s: Session, now: number) {
  return { shop: s.shop, to: s.visitor, realfrom: s.agent, qchatid: QCHAT_TO_VISITOR, now };
}

export const replayed = (xml: string, to: string, at: number, shop: string) => replay(parseElement(xml), to, at, shop);

export const bodyText = (stanza: XmlElement) => textOf(findChild(stanza, 'body')!);
