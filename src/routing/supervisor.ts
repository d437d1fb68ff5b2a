// What a shop's supervisors do from any XMPP client (the commands: src/routing/commands.ts): see the
// shop's open sessions and queue, watch a session (a marked copy of both directions), whisper to
// its agent (the visitor never sees it; the transcript keeps it as a whisper line), and take it
// over (it moves to the supervisor as a transfer does). Only the shop's supervisors may; anyone
// else is refused with `forbidden`. Watching is journaled with the session, so it survives a
// restart, and ends with the session or when the supervisor takes it over.
//
// A copy for a watching supervisor is the relayed message itself, addressed to the supervisor,
// with no_update_msg_log (not a conversation of its own), its body prefixed "[from → to] " for
// plain clients (a revoke's body stays as it is: its JSON names the message taken back), and a child saying what it is:
//   <monitored xmlns='urn:xmpp:consult:supervisor:0' visitor='v1@host' agent='test01@host' from='visitor'/>
import type { Shop } from '../domain/shop.js';
import { QCHAT_TO_AGENT, ack, ensureBodyId, notice } from '../xmpp/stanzas.js';
import { cloneNode, el, findChild, textOf, type XmlElement } from '../xmpp/xml.js';
import { type Decision, drop, reject } from '../domain/decision.js';
import { render } from '../domain/texts.js';
import type { SupervisorCommand } from './commands.js';
import type { Changes, ShopContext } from './changes.js';
import { BOT, type Session, type ShopState } from './state.js';
import { handOver } from './session.js';

export const NS_SUPERVISOR = 'urn:xmpp:consult:supervisor:0';
/** At most this many sessions and waiting visitors are listed by /live. */
export const LIVE_MAX = 200;

export function isSupervisor(shop: Shop, jid: string): boolean {
  return shop.supervisors?.includes(jid) ?? false;
}

/** A supervisor command from anyone else. */
export function notSupervisor(cx: ShopContext): Decision {
  return reject('forbidden', 'auth', `only the supervisors of ${cx.shop.jid} may do this`);
}

/** A supervisor command from `supervisor` (a supervisor of the shop: the caller checked). */
export function fromSupervisor(cx: ShopContext, w: Changes, stanza: XmlElement, supervisor: string, command: SupervisorCommand): Decision {
  const { shop, now } = cx;
  const t = cx.texts;
  const acked = ack(supervisor, ensureBodyId(stanza)!, now);
  const tell = (text: string) => notice({ shop: shop.jid, to: supervisor, realfrom: shop.jid, qchatid: QCHAT_TO_AGENT, now, text });
  if (command.name === 'live') return drop([acked, live(cx, w.state, supervisor)]);
  if (command.name === 'unmonitor' && !command.visitor) {
    const watched = [...w.state.sessions.values()].filter((s) => s.monitors?.includes(supervisor));
    for (const s of watched) w.do({ op: 'monitor', v: s.visitor, who: supervisor, on: false });
    return drop([acked, ...watched.map((s) => tell(render(t.monitorOff, { visitor: s.visitor })))]);
  }
  const s = w.state.sessions.get(command.visitor!);
  if (!s) return reject('item-not-found', 'cancel', `${command.visitor} has no open session with ${shop.jid}`);
  switch (command.name) {
    case 'monitor':
      if (!s.monitors?.includes(supervisor)) w.do({ op: 'monitor', v: s.visitor, who: supervisor, on: true });
      return drop([acked, tell(render(t.monitorOn, { visitor: s.visitor, agent: s.agent }))]);
    case 'unmonitor':
      if (s.monitors?.includes(supervisor)) w.do({ op: 'monitor', v: s.visitor, who: supervisor, on: false });
      return drop([acked, tell(render(t.monitorOff, { visitor: s.visitor }))]);
    case 'whisper': {
      if (s.agent === BOT) return reject('not-acceptable', 'cancel', `the bot serves ${s.visitor}: there is no agent to whisper to`);
      w.do({ op: 'whisper', v: s.visitor, who: supervisor, at: now, text: command.text });
      const whisper = notice({
        shop: shop.jid,
        to: s.agent,
        realfrom: supervisor,
        qchatid: QCHAT_TO_AGENT,
        now,
        text: render(t.whisperToAgent, { supervisor, visitor: s.visitor, text: command.text }),
      });
      whisper.children.push(el('whisper', { xmlns: NS_SUPERVISOR, visitor: s.visitor, from: supervisor }));
      return drop([acked, whisper, tell(render(t.whisperSent, { visitor: s.visitor, agent: s.agent }))]);
    }
    case 'takeover': {
      if (s.agent === supervisor) return reject('conflict', 'cancel', `you already serve ${s.visitor}`);
      if (!cx.agentState(supervisor).keepsSessions)
        return reject('recipient-unavailable', 'wait', `your presence is not available to ${shop.jid}: send available presence first`);
      // The supervisor serves it now: a copy of its own conversation would be noise.
      if (s.monitors?.includes(supervisor)) w.do({ op: 'monitor', v: s.visitor, who: supervisor, on: false });
      return drop([acked, ...handOver(cx, w, s, supervisor, render(t.takenOver, { supervisor }))]);
    }
  }
}

/** Copies of a relayed message for the supervisors watching its session. */
export function monitorCopies(s: Session, relayed: XmlElement, from: 'visitor' | 'agent'): XmlElement[] {
  if (!s.monitors) return [];
  return s.monitors.filter((m) => m !== s.agent).map((m) => monitorCopy(relayed, m, s, from));
}

function monitorCopy(relayed: XmlElement, to: string, s: Session, from: 'visitor' | 'agent'): XmlElement {
  const copy = cloneNode(relayed);
  copy.attrs.to = to;
  copy.attrs.no_update_msg_log = 'true';
  const body = findChild(copy, 'body');
  if (body && copy.attrs.type !== 'revoke') {
    const [a, b] = from === 'visitor' ? [s.visitor, s.agent] : [s.agent, s.visitor];
    body.children = [`[${a} → ${b}] ${textOf(body)}`];
  }
  copy.children.push(el('monitored', { xmlns: NS_SUPERVISOR, visitor: s.visitor, agent: s.agent, from }));
  return copy;
}

/** `/live`: the shop's open sessions and its queue, to the supervisor alone; read-only. */
function live(cx: ShopContext, st: ShopState, supervisor: string): XmlElement {
  const sessions = [...st.sessions.values()].sort((a, b) => a.startedAt - b.startedAt);
  const waiting = [...st.queue];
  const lines = [
    ...sessions.map((s) =>
      el('session', {
        visitor: s.visitor,
        agent: s.agent,
        since: String(s.startedAt),
        ...(s.monitors?.includes(supervisor) ? { monitored: 'true' } : {}),
      }),
    ),
    ...waiting.map(([v, at]) => el('waiting', { visitor: v, since: String(at), group: st.queueGroup.get(v) ?? '' })),
  ].slice(0, LIVE_MAX);
  const info = el(
    'live',
    { xmlns: NS_SUPERVISOR, shop: cx.shop.jid, sessions: String(sessions.length), queue: String(waiting.length) },
    lines,
  );
  const readable = [
    `${sessions.length} open session${sessions.length === 1 ? '' : 's'}, ${waiting.length} waiting`,
    ...sessions.slice(0, 20).map((s) => `${s.visitor} → ${s.agent}`),
    ...waiting.slice(0, 20).map(([v], i) => `${i + 1}. ${v} (waiting)`),
  ].join('\n');
  const out = notice({ shop: cx.shop.jid, to: supervisor, realfrom: cx.shop.jid, qchatid: QCHAT_TO_AGENT, now: cx.now, text: readable });
  out.children.push(info);
  return out;
}
