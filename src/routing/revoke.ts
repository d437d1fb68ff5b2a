// QChat revokes (type='revoke', msgType -1/-2): a sender takes back one of its messages. Relayed to the other side
// rewritten like any consult message (it stays a revoke, the revoked body id kept), acked like QChat's server acks
// every message with a body, and the transcript line marked revoked. A revoke never opens a session nor joins the
// queue: without a session it only takes a waiting visitor's kept message back (or is acked and goes nowhere, as in
// QChat, where a revoke nobody is chatting about is only stored). The formats: src/xmpp/message-kind.ts.
import { type Decision, drop, reject, rewrite } from '../domain/decision.js';
import { revokedId } from '../xmpp/message-kind.js';
import { ack, ensureBodyId, relay } from '../xmpp/stanzas.js';
import { serialize, type XmlElement } from '../xmpp/xml.js';
import type { Changes, ShopContext } from './changes.js';
import { keptFull } from './kept.js';
import { toAgent, toVisitor } from './replies.js';
import { monitorCopies } from './supervisor.js';
import { BOT, type Session, type ShopState } from './state.js';

const unnamed = () =>
  reject('bad-request', 'modify', 'a revoke names the message it takes back: {"messageId":"…"} in its body, or its body id');

/** A visitor's revoke. */
export function visitorRevoke(cx: ShopContext, w: Changes, stanza: XmlElement, visitor: string): Decision {
  const id = revokedId(stanza);
  if (!id) return unnamed();
  const st = w.state;
  const { now } = cx;
  const session = st.sessions.get(visitor);
  const acked = [ack(visitor, ensureBodyId(stanza)!, now)];
  const mine = hasLine(st, visitor, id, 'visitor');
  if (!session) {
    // Waiting (queue or left message): its kept message goes; with nothing of it here, acked and gone.
    if (mine || keptHas(st, visitor, id)) w.do({ op: 'revoke', v: visitor, id, by: 'visitor', at: now });
    return drop(acked);
  }
  if (!mine) return notYours(id, st.shop);
  if (st.kept.has(visitor)) {
    // Its messages are on their way to the agent: the revoke follows them, in order.
    const xml = serialize(stanza);
    const refused = keptFull(st, visitor, xml);
    if (refused) return refused;
    w.do({ op: 'revoke', v: visitor, id, by: 'visitor', at: now, xml, keep: true });
    w.releases.add(visitor);
    return drop(acked);
  }
  if (session.agent === BOT) {
    w.do({ op: 'revoke', v: visitor, id, by: 'visitor', at: now });
    return drop(acked);
  }
  return relayed(w, session, id, 'visitor', relay(stanza, toAgent(session, now)), acked, now);
}

/** An agent's revoke in the session it serves (the caller found the session as for any agent message). */
export function agentRevoke(cx: ShopContext, w: Changes, stanza: XmlElement, agent: string, session: Session): Decision {
  const id = revokedId(stanza);
  if (!id) return unnamed();
  const { now } = cx;
  const acked = [ack(agent, ensureBodyId(stanza)!, now)];
  if (!hasLine(w.state, session.visitor, id, 'agent', agent)) return notYours(id, w.state.shop);
  return relayed(w, session, id, 'agent', relay(stanza, toVisitor(session, now)), acked, now);
}

function relayed(w: Changes, s: Session, id: string, by: 'visitor' | 'agent', out: XmlElement, acked: XmlElement[], now: number): Decision {
  const xml = serialize(out);
  w.do({ op: 'revoke', v: s.visitor, id, by, at: now, xml });
  // Watching supervisors get a copy that stays a revoke, its JSON body intact (monitorCopy leaves it unprefixed).
  return rewrite(out, [...acked, ...monitorCopies(s, out, by)], xml);
}

const notYours = (id: string, shop: string) =>
  reject('item-not-found', 'cancel', `no message ${id} of yours in this consult session with ${shop} to revoke`);

/** Whether the session's transcript has this message of the sender (an agent: its own lines only). */
function hasLine(st: ShopState, visitor: string, id: string, by: 'visitor' | 'agent', agent?: string): boolean {
  const lines = st.transcripts.get(visitor)?.lines ?? [];
  return lines.some((l) => l.id === id && (by === 'visitor' ? l.role === 'visitor' : l.role === 'agent' && l.who === agent));
}

function keptHas(st: ShopState, visitor: string, id: string): boolean {
  return (st.kept.get(visitor) ?? []).some((m) => m.xml.includes(id));
}
