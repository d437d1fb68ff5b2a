// Visitor context in the decisions (src/domain/context.ts parses and bounds it): a visitor's message may update the
// context kept on its transcript (a `context` change); the agent serving it gets the server's structured child on
// the relayed message and a notice (readable text + the child) whenever it changes, and on being given the session
// (from the queue, a left message, a transfer). The visitor's own child is never relayed as the visitor wrote it.
import { type ContextUpdate, contextElement, contextText, isEmptyContext, mergeContext, sameContext } from '../domain/context.js';
import { rewrite, type Decision } from '../domain/decision.js';
import { render } from '../domain/texts.js';
import { QCHAT_TO_AGENT, QCHAT_TO_VISITOR, notice } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import type { Changes, ShopContext } from './changes.js';
import { BOT, type ShopState } from './state.js';

/**
 * After a visitor's message was decided: the context it carried joins the transcript's, if the message opened,
 * joined or continued anything (a transcript exists); a rating or a refused message leaves the context as it was.
 */
export function noteContext(cx: ShopContext, w: Changes, visitor: string, sent: ContextUpdate, d: Decision): Decision {
  if (d.action === 'reject' || d.action === 'pass') return d;
  const st = w.state;
  const t = st.transcripts.get(visitor);
  if (!t) return d;
  const merged = mergeContext(t.context, sent);
  if (!merged) return d;
  const changed = !sameContext(merged.ctx, t.context);
  if (changed) w.do({ op: 'context', v: visitor, ctx: merged.ctx });
  const extra = [...d.extra];
  const { shop, now } = cx;
  if (merged.dropped.length) {
    const text = render(cx.texts.contextDropped, { parts: merged.dropped.join('; ') });
    extra.push(notice({ shop: shop.jid, to: visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text }));
  }
  const s = st.sessions.get(visitor);
  if (!changed || !s || s.agent === BOT || isEmptyContext(merged.ctx)) return { ...d, extra };
  extra.push(...contextNotice(cx, st, visitor, s.agent));
  if (d.action === 'rewrite' && d.stanza.attrs.to === s.agent) {
    d.stanza.children.push(contextElement(merged.ctx));
    return rewrite(d.stanza, extra);
  }
  return { ...d, extra };
}

/** The notice that tells an agent a visitor's context: readable text and the structured child; none without one. */
export function contextNotice(cx: ShopContext, st: ShopState, visitor: string, agent: string): XmlElement[] {
  const ctx = st.transcripts.get(visitor)?.context;
  if (agent === BOT || isEmptyContext(ctx)) return [];
  const { shop, now } = cx;
  const text = render(cx.texts.contextToAgent, { visitor, context: contextText(ctx) });
  const told = notice({ shop: shop.jid, to: agent, realfrom: visitor, qchatid: QCHAT_TO_AGENT, now, text });
  told.children.push(contextElement(ctx!));
  return [told];
}
