// An agent's tags and notes on its open session (the commands: src/routing/commands.ts). Tags are a bounded set of
// labels on the session's transcript, archived with it (GET /archive?tag=, /stats?tag=); a note is a transcript line
// of role 'note'. Neither ever reaches the visitor: the agent gets an ack and a notice, a watching supervisor a copy
// of the note.
import { TAGS_MAX } from '../domain/archive.js';
import { type Decision, drop, reject } from '../domain/decision.js';
import { render } from '../domain/texts.js';
import { QCHAT_TO_AGENT, ack, ensureBodyId, notice } from '../xmpp/stanzas.js';
import { el, type XmlElement } from '../xmpp/xml.js';
import type { Changes, ShopContext } from './changes.js';
import type { Session } from './state.js';
import { NS_SUPERVISOR } from './supervisor.js';

/** `/tag` (on) or `/untag` (off; no labels: all of them), confirmed with the session's tags as they are now. */
export function tagSession(cx: ShopContext, w: Changes, stanza: XmlElement, s: Session, labels: string[], on: boolean): Decision {
  const now = w.state.transcripts.get(s.visitor)?.tags ?? [];
  const changing = on ? labels.filter((l) => !now.includes(l)) : labels.length ? labels.filter((l) => now.includes(l)) : now;
  if (on && now.length + changing.length > TAGS_MAX)
    return reject('policy-violation', 'modify', `a session has at most ${TAGS_MAX} tags (${s.visitor}'s has ${now.length})`);
  for (const label of [...changing]) w.do({ op: 'tag', v: s.visitor, label, on });
  const tags = w.state.transcripts.get(s.visitor)?.tags ?? [];
  return drop([acked(cx, stanza, s), tell(cx, s, render(cx.texts.tagsNow, { visitor: s.visitor, tags: tags.join(', ') || '—' }))]);
}

/** `/note <text>`: a 'note' line in the transcript, confirmed to the agent, copied to the supervisors watching. */
export function noteSession(cx: ShopContext, w: Changes, stanza: XmlElement, s: Session, text: string): Decision {
  w.do({ op: 'note', v: s.visitor, who: s.agent, at: cx.now, text });
  const copies = (s.monitors ?? [])
    .filter((m) => m !== s.agent)
    .map((m) => {
      const copy = notice({
        shop: cx.shop.jid,
        to: m,
        realfrom: s.agent,
        qchatid: QCHAT_TO_AGENT,
        now: cx.now,
        text: `[${s.agent} note] ${text}`,
      });
      copy.children.push(el('monitored', { xmlns: NS_SUPERVISOR, visitor: s.visitor, agent: s.agent, from: 'note' }));
      return copy;
    });
  return drop([acked(cx, stanza, s), tell(cx, s, render(cx.texts.noteKept, { visitor: s.visitor })), ...copies]);
}

const acked = (cx: ShopContext, stanza: XmlElement, s: Session) => ack(s.agent, ensureBodyId(stanza)!, cx.now);
const tell = (cx: ShopContext, s: Session, text: string) =>
  notice({ shop: cx.shop.jid, to: s.agent, realfrom: cx.shop.jid, qchatid: QCHAT_TO_AGENT, now: cx.now, text });
