// Messages from agents: a reply relayed to its visitor, and every agent command (src/routing/commands.ts).
import type { Shop } from '../domain/shop.js';
import { bareJid } from '../xmpp/jid.js';
import { ack, ensureBodyId, relay } from '../xmpp/stanzas.js';
import { findChild, serialize, type XmlElement } from '../xmpp/xml.js';
import type { Session, ShopState } from './state.js';
import { type StanzaErrorInfo, ConsultError, type Decision } from '../domain/decision.js';
import type { ShopContext, Changes } from './changes.js';
import { drop, reject, rewrite } from '../domain/decision.js';
import { toVisitor, bodyText } from './replies.js';
import { agentCommand, supervisorCommand } from './commands.js';
import { fromSupervisor, isSupervisor, monitorCopies, notSupervisor } from './supervisor.js';
import { agentInfo } from './agent-info.js';
import { render } from '../domain/texts.js';
import { QCHAT_TO_AGENT, notice } from '../xmpp/stanzas.js';
import type { AgentStatus } from '../domain/shop.js';
import { closeSession, transferToGroup, transferSession } from './session.js';
import { serveQueue } from './queue.js';
import { askHistory } from './history.js';
import { listCanned, withCannedBody } from './canned.js';
import { noteSession, tagSession } from './notes.js';
import { agentRevoke } from './revoke.js';
import { bodyFacts } from '../xmpp/message-kind.js';

export function fromAgent(cx: ShopContext, w: Changes, given: XmlElement, agent: string, type: string): Decision {
  let stanza = given;
  const { now } = cx;
  // A readmark or a revoke is never a command (a revoke's body is JSON).
  const plain = type === 'readmark' || type === 'revoke';
  const supervising = plain ? undefined : supervisorCommand(stanza, cx.shop.jid);
  if (supervising) return isSupervisor(cx.shop, agent) ? fromSupervisor(cx, w, stanza, agent, supervising) : notSupervisor(cx);
  const command = plain ? undefined : agentCommand(stanza, cx.shop.jid);
  // These two need no session: an agent may set its status or look at its sessions at any time.
  if (command?.name === 'status') return setStatus(cx, w, stanza, agent, command.status);
  if (command?.name === 'sessions') return listSessions(cx, w, stanza, agent);
  if (command?.name === 'history' && command.visitor) return askHistory(cx, w, stanza, agent, command.visitor);
  if (command?.name === 'invalid') return reject('bad-request', 'modify', command.text);
  const found = servedVisitor(w.state, stanza, cx.shop, agent);
  // The list needs no session; with one, it is the replies of the session's groups.
  if (command?.name === 'canned-list') return listCanned(cx, stanza, agent, 'session' in found ? found.session : undefined);
  if ('error' in found) {
    // Only content deserves an error; a stray typing notification is just dropped.
    return findChild(stanza, 'body') || type === 'readmark' ? { action: 'reject', error: found.error, extra: [] } : drop();
  }
  const session = found.session;
  if (type === 'readmark') return rewrite(relay(stanza, toVisitor(session, now), 'readmark'), []);
  if (type === 'revoke') return agentRevoke(cx, w, stanza, agent, session);
  if (command?.name === 'history') return askHistory(cx, w, stanza, agent, session.visitor);
  const bodyId = ensureBodyId(stanza);
  const acked = bodyId ? [ack(agent, bodyId, now)] : [];
  if (command?.name === 'tag' || command?.name === 'untag')
    return tagSession(cx, w, stanza, session, command.labels, command.name === 'tag');
  if (command?.name === 'note') return noteSession(cx, w, stanza, session, command.text);
  if (command?.name === 'canned') {
    // From here on the agent's message is the canned text: relayed, journaled and archived as the agent's line.
    const filled = withCannedBody(cx, stanza, session, command.reply, w.state.transcripts.get(session.visitor)?.context?.name);
    if ('action' in filled) return filled;
    stanza = filled;
  } else if (command) {
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
  if (bodyId) w.do({ op: 'said', v: session.visitor, by: 'agent', at: now, xml, text: bodyText(stanza), ...bodyFacts(stanza) });
  return rewrite(relayed, [...acked, ...monitorCopies(session, relayed, 'agent')], xml);
}

/** `/status …`: set once this is durable (the desk does it, for every shop of the agent), then confirmed. */
function setStatus(cx: ShopContext, w: Changes, stanza: XmlElement, agent: string, status: AgentStatus): Decision {
  const { shop, now } = cx;
  w.statuses.push({ agent, status });
  const text = render(cx.texts.statusSet, { status });
  const told = notice({ shop: shop.jid, to: agent, realfrom: shop.jid, qchatid: QCHAT_TO_AGENT, now, text });
  return drop([ack(agent, ensureBodyId(stanza)!, now), told]);
}

/** `/sessions`: the agent's open sessions in this shop and the queue length, answered to it alone. */
function listSessions(cx: ShopContext, w: Changes, stanza: XmlElement, agent: string): Decision {
  const st = w.state;
  const info = agentInfo({
    shop: cx.shop.jid,
    agent,
    status: cx.agentStatus(agent),
    queue: st.queue.size,
    sessions: [...(st.byAgent.get(agent) ?? [])].map((v) => st.sessions.get(v)!),
    now: cx.now,
    missed: st.missed.get(agent) ?? { inRow: 0, total: 0 },
    waiting: { left: st.left.size, abandoned: [...st.abandoned.values()].reduce((n, a) => n + a.count, 0) },
    contextOf: (v) => st.transcripts.get(v)?.context,
  });
  return drop([ack(agent, ensureBodyId(stanza)!, cx.now), info]);
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
