// The queue: waiting visitors are assigned, first come first served per group, while agents have room.
import { QCHAT_TO_AGENT, notice } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import { render } from '../domain/texts.js';
import type { ShopContext, Changes } from './changes.js';
import { chooseAgent } from './assign.js';
import { welcome, replayed } from './replies.js';
import { answerClock } from './groups.js';
import { BOT } from './state.js';
import { contextNotice } from './context.js';

/** Assigns waiting visitors while agents have room; their kept messages follow once this is durable. */
export function serveQueue(cx: ShopContext, w: Changes): XmlElement[] {
  const st = w.state;
  const out: XmlElement[] = [];
  // Oldest first within each group key; a key nobody can serve now is skipped, so other groups' visitors move on.
  const full = new Set<string>();
  for (const visitor of st.queue.keys()) {
    const key = st.queueGroup.get(visitor) ?? '';
    if (full.has(key)) continue;
    const agent = chooseAgent(cx, st, visitor, undefined, key);
    if (!agent) {
      full.add(key);
      if (key === '' || full.size >= st.waiting.size) break;
      continue;
    }
    const past = st.history.get(visitor); // back from the bot (or an agent gone offline): the conversation so far
    const from = past?.length ? st.lastServedBy(visitor) : undefined; // the bot or the agent it came back from
    const since = st.queue.get(visitor)!; // its place, kept should it wait again
    w.do({ op: 'dequeue', v: visitor });
    w.do({ op: 'open', v: visitor, agent, at: cx.now, since, ...(key ? { g: key } : {}), ...answerClock(cx.shop, agent, key) });
    // A visitor back from the bot or from an agent gone offline was welcomed when its conversation began.
    if (past?.length) out.push(...handedOver(cx, visitor, agent, past, from));
    else out.push(welcome(cx, visitor));
    out.push(...contextNotice(cx, st, visitor, agent));
    if (st.kept.has(visitor)) w.releases.add(visitor);
  }
  return out;
}

/**
 * A visitor coming back from the bot or from an agent gone: the human gets the conversation so far, marked as
 * history, under a heading that says whose it was (read before `open` names the new agent).
 */
function handedOver(cx: ShopContext, visitor: string, agent: string, past: { at: number; xml: string }[], from?: string): XmlElement[] {
  const { shop, now } = cx;
  const text = from === BOT ? render(cx.texts.botHistory, { visitor }) : render(cx.texts.agentHistory, { visitor, agent: from ?? '' });
  return [
    notice({ shop: shop.jid, to: agent, realfrom: visitor, qchatid: QCHAT_TO_AGENT, now, text }),
    ...past.map((h) => replayed(h.xml, agent, h.at, shop.jid)),
  ];
}
