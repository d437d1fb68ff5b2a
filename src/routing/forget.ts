// Erasure of a visitor in one shop: everything the shop's state holds of it goes in one `forget` change. An open
// session ends with it; its agent is told. The visitor is not: whatever the server sent it now would be stored
// again (offline, MAM) right after ejabberd's copies of it were erased.
import { QCHAT_TO_AGENT, notice } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import { render } from '../domain/texts.js';
import type { Changes, ShopContext } from './changes.js';
import { BOT, type ShopState } from './state.js';

/** Whether the shop's state holds anything of the visitor (the forget change would remove something). */
export function holds(st: ShopState, v: string): boolean {
  const maps: ReadonlyMap<string, unknown>[] = [st.sessions, st.queue, st.kept, st.history, st.transcripts, st.ratingDue, st.left];
  if (maps.some((m) => m.has(v)) || st.sticky.has(v)) return true;
  for (const u of st.unarchived.values()) if (u.kind === 'session' && u.record.visitor === v) return true;
  for (const e of st.outbox.values()) if (e.visitor === v) return true;
  return false;
}

export function forgetVisitor(cx: ShopContext, w: Changes, v: string): XmlElement[] {
  const s = w.state.sessions.get(v);
  w.do({ op: 'forget', v });
  if (!s || s.agent === BOT) return [];
  const text = render(cx.texts.forgottenToAgent, { visitor: v });
  return [notice({ shop: cx.shop.jid, to: s.agent, realfrom: v, qchatid: QCHAT_TO_AGENT, now: cx.now, autoReply: true, text })];
}
