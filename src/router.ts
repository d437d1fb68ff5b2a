// Decides what happens to each consult stanza, and runs the session lifecycle:
// assignment, waiting queue, close, transfer, idle and offline timers.
import { agentState, type AgentState } from './availability.js';
import { pickAgent } from './assign.js';
import type { Config } from './config.js';
import type { Directory } from './directory.js';
import { SessionEvent_Kind as Kind, type SessionEvent } from './gen/consult/v1/filter.js';
import { bareJid } from './jid.js';
import { AGENT_STATUSES, type AgentStatus, type Session, type Shop, type ShopTx, type Store } from './store.js';
import {
  QCHAT_TO_AGENT, QCHAT_TO_VISITOR, ack, autoReply, ensureBodyId, notice, relay, replay, withoutRealAddresses,
} from './stanzas.js';
import { XmlError, findChild, parseElement, serialize, textOf, type XmlElement } from './xml.js';

export interface StanzaErrorInfo {
  condition: string; // RFC 6120 defined condition
  type: 'cancel' | 'modify' | 'wait' | 'auth';
  text: string;
}

export type Decision =
  | { action: 'pass'; extra: XmlElement[] }
  | { action: 'rewrite'; stanza: XmlElement; extra: XmlElement[] }
  | { action: 'drop'; extra: XmlElement[] }
  | { action: 'reject'; error: StanzaErrorInfo; extra: XmlElement[] };

/** A refused admin or agent action (unknown session, agent not available...). */
export class ConsultError extends Error {
  constructor(readonly error: StanzaErrorInfo) {
    super(error.text);
  }
}

export type CloseReason = 'agent' | 'admin' | 'idle';
const HISTORY_KEEP = 20;

const PASS: Decision = { action: 'pass', extra: [] };
const reject = (condition: string, type: StanzaErrorInfo['type'], text: string): Decision => ({
  action: 'reject', error: { condition, type, text }, extra: [],
});
const refuse = (condition: string, type: StanzaErrorInfo['type'], text: string) => new ConsultError({ condition, type, text });

export interface RouterDeps {
  config: Config;
  store: Store;
  directory: Directory;
  /** Routes stanzas the router sends on its own (timers, queue, admin actions). */
  send: (stanzas: XmlElement[]) => void;
  now?: () => number;
  random?: () => number;
}

export class ConsultRouter {
  private readonly config: Config;
  private readonly store: Store;
  private readonly directory: Directory;
  private readonly send: (stanzas: XmlElement[]) => void;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(deps: RouterDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.directory = deps.directory;
    this.send = deps.send;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
  }

  watchList() {
    return this.directory.watchList();
  }

  // ---- stanzas ---------------------------------------------------------------

  async decide(stanzaXml: string | Buffer): Promise<Decision> {
    const size = Buffer.byteLength(stanzaXml);
    if (size > this.config.maxStanzaBytes) {
      return reject('policy-violation', 'modify', `stanza of ${size} bytes exceeds the consult limit of ${this.config.maxStanzaBytes}`);
    }
    let stanza: XmlElement;
    try {
      stanza = parseElement(stanzaXml.toString());
    } catch (e) {
      if (e instanceof XmlError) return reject('bad-request', 'modify', e.message);
      throw e;
    }
    if (stanza.name !== 'message' || !stanza.attrs.from || !stanza.attrs.to) return PASS;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return PASS;

    const from = bareJid(stanza.attrs.from);
    const shop = this.directory.shop(bareJid(stanza.attrs.to));
    if (shop) {
      const status = this.directory.membership(shop.jid, from) ? statusCommand(stanza) : undefined;
      if (status) return this.setStatus(stanza, shop, from, status);
      // Availability is only needed when someone must be assigned: most messages belong to an open session.
      let cached: Promise<Map<string, AgentState>> | undefined;
      const states = () => (cached ??= this.agentStates(shop));
      return this.store.withShop(shop.jid, (tx) =>
        this.directory.membership(shop.jid, from)
          ? this.fromAgent(tx, stanza, shop, from, type, states)
          : this.fromVisitor(tx, stanza, shop, from, type, states));
    }
    if (type === 'consult') return reject('item-not-found', 'cancel', `${bareJid(stanza.attrs.to)} is not a shop; consult messages go to a shop JID`);
    // A readmark straight between a visitor and an agent: deliver it, but realfrom/realto are the server's to set.
    if ('realfrom' in stanza.attrs || 'realto' in stanza.attrs) {
      return { action: 'rewrite', stanza: withoutRealAddresses(stanza), extra: [] };
    }
    return PASS;
  }

  private async fromVisitor(tx: ShopTx, stanza: XmlElement, shop: Shop, visitor: string, type: string, lazyStates: () => Promise<Map<string, AgentState>>): Promise<Decision> {
    const now = this.now();
    let session = await tx.getSession(visitor);
    const hasBody = findChild(stanza, 'body') !== undefined;

    if (type === 'readmark') {
      if (!session) return { action: 'drop', extra: [] };
      return { action: 'rewrite', stanza: relay(stanza, this.toAgent(session, now), 'readmark'), extra: [] };
    }
    // Typing notifications and the like never open a session or join the queue.
    if (!session && !hasBody) return { action: 'drop', extra: [] };

    const bodyId = ensureBodyId(stanza);
    const acked = bodyId ? [ack(visitor, bodyId, now)] : [];
    const extra: XmlElement[] = [];
    if (!session) {
      const states = await lazyStates();
      // Whoever waits longer goes first: serve the queue before this visitor.
      extra.push(...(await this.serveQueue(tx, shop, states, now)));
      const waiting = await tx.queue();
      if (!waiting.some((e) => e.visitor === visitor) && waiting.length === 0) {
        const agent = await this.choose(tx, shop, visitor, states, now);
        if (agent) {
          session = await this.open(tx, shop, visitor, agent, now);
          extra.push(this.welcome(shop, visitor, now));
        }
      }
      if (!session) return this.wait(tx, stanza, shop, visitor, states, now, acked, extra);
    }
    if (hasBody) session.lastVisitorAt = now;
    await tx.putSession(session);
    const relayed = relay(stanza, this.toAgent(session, now));
    if (hasBody) await tx.appendHistory(visitor, { at: now, xml: serialize(relayed) }, HISTORY_KEEP);
    return { action: 'rewrite', stanza: relayed, extra: [...acked, ...extra] };
  }

  /** No agent now: keep the message and tell the visitor where they stand. */
  private async wait(tx: ShopTx, stanza: XmlElement, shop: Shop, visitor: string, states: Map<string, AgentState>, now: number, acked: XmlElement[], extra: XmlElement[]): Promise<Decision> {
    const noAgent = (realfrom: string) => autoReply({ shop: shop.jid, visitor, realfrom, text: shop.noAgentText, now });
    if (!shop.queueEnabled) return { action: 'drop', extra: [...extra, noAgent(shop.jid)] }; // not kept, so not acked
    const already = (await tx.queue()).some((e) => e.visitor === visitor);
    await tx.enqueue(visitor, now);
    await tx.hold(visitor, { at: now, xml: serialize(stanza) });
    if (already) return { action: 'drop', extra: [...acked, ...extra] };
    const position = await queuePosition(tx, visitor);
    const anyoneServing = this.directory.membersOf(shop.jid).some((m) => states.get(m.agent)?.assignable);
    const told = anyoneServing
      ? notice({ shop: shop.jid, to: visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text: `当前咨询人数较多，您排在第 ${position} 位，请稍候。` })
      : noAgent(shop.jid);
    return { action: 'drop', extra: [...acked, ...extra, told] };
  }

  private async fromAgent(tx: ShopTx, stanza: XmlElement, shop: Shop, agent: string, type: string, lazyStates: () => Promise<Map<string, AgentState>>): Promise<Decision> {
    const now = this.now();
    const found = await this.servedVisitor(tx, stanza, shop, agent);
    if ('error' in found) {
      // Only content deserves an error; a stray typing notification is just dropped.
      return findChild(stanza, 'body') || type === 'readmark' ? { action: 'reject', error: found.error, extra: [] } : { action: 'drop', extra: [] };
    }
    const session = found.session;
    if (type === 'readmark') {
      return { action: 'rewrite', stanza: relay(stanza, this.toVisitor(session, now), 'readmark'), extra: [] };
    }
    const bodyId = ensureBodyId(stanza);
    const acked = bodyId ? [ack(agent, bodyId, now)] : [];
    const command = bodyId ? parseCommand(textOf(findChild(stanza, 'body')!), shop.jid) : undefined;
    if (command) {
      const states = await lazyStates();
      try {
        const out = command.name === 'close'
          ? await this.closeIn(tx, shop, session, 'agent', now)
          : await this.transferIn(tx, shop, session, command.to, command.reason, states, now);
        return { action: 'drop', extra: [...acked, ...out, ...(await this.serveQueue(tx, shop, states, now))] };
      } catch (e) {
        if (e instanceof ConsultError) return { action: 'reject', error: e.error, extra: [] };
        throw e;
      }
    }
    const relayed = relay(stanza, this.toVisitor(session, now));
    if (bodyId) {
      session.lastAgentAt = now;
      await tx.putSession(session);
      await tx.appendHistory(session.visitor, { at: now, xml: serialize(relayed) }, HISTORY_KEEP);
    }
    return { action: 'rewrite', stanza: relayed, extra: acked };
  }

  /** The visitor an agent's message is for: its realto, or its only session in the shop. Never a guess. */
  private async servedVisitor(tx: ShopTx, stanza: XmlElement, shop: Shop, agent: string): Promise<{ session: Session } | { error: StanzaErrorInfo }> {
    const realto = stanza.attrs.realto;
    if (realto) {
      const session = await tx.getSession(bareJid(realto));
      if (session?.agent === agent) return { session };
      return { error: { condition: 'forbidden', type: 'auth', text: `you are not serving ${bareJid(realto)} for ${shop.jid}` } };
    }
    const mine = (await tx.sessions()).filter((s) => s.agent === agent);
    if (mine.length === 1) return { session: mine[0] };
    if (mine.length === 0) {
      return { error: { condition: 'item-not-found', type: 'cancel', text: `you have no open consult session for ${shop.jid}` } };
    }
    return {
      error: {
        condition: 'not-acceptable', type: 'modify',
        text: `you serve ${mine.length} visitors of ${shop.jid}; set realto to one of: ${mine.map((s) => s.visitor).sort().join(', ')}`,
      },
    };
  }

  /** `/status dnd|standard|always-on` from an agent to any of its shops. */
  private async setStatus(stanza: XmlElement, shop: Shop, agent: string, status: AgentStatus): Promise<Decision> {
    const now = this.now();
    await this.store.putAgent({ jid: agent, status });
    for (const s of this.directory.shopsOf(agent)) await this.drainQueue(s.jid);
    const told = notice({ shop: shop.jid, to: agent, realfrom: shop.jid, qchatid: QCHAT_TO_AGENT, now, text: `您的接待状态已设为 ${status}。` });
    return { action: 'drop', extra: [ack(agent, ensureBodyId(stanza)!, now), told] };
  }

  // ---- notifications from the shim -----------------------------------------

  /** A shim (re)opened its stream: forget what its node reported before; it reports again. */
  async nodeConnected(node: string): Promise<void> {
    await this.store.clearNode(node);
  }

  async handleEvent(event: SessionEvent, node: string): Promise<void> {
    const full = event.jid;
    const agent = bareJid(full);
    if (!this.directory.isAgent(agent)) return;
    const resource = full.includes('/') ? full.slice(full.indexOf('/') + 1) : '';
    if (event.kind === Kind.PRESENCE_SET) {
      await this.store.setResource({ agent, resource, node, show: event.show, priority: event.priority });
      // An agent who can take chats now takes the oldest waiting visitors.
      for (const shop of this.directory.shopsOf(agent)) await this.drainQueue(shop.jid);
    } else if (event.kind === Kind.PRESENCE_UNSET || event.kind === Kind.SESSION_CLOSE) {
      await this.store.removeResource(agent, resource);
    }
  }

  // ---- admin and agent actions ---------------------------------------------

  async closeSession(shopJid: string, visitor: string, reason: CloseReason): Promise<void> {
    await this.onSession(shopJid, visitor, async (tx, shop, session, states, now) =>
      [...(await this.closeIn(tx, shop, session, reason, now)), ...(await this.serveQueue(tx, shop, states, now))]);
  }

  async transferSession(shopJid: string, visitor: string, toAgent: string, reason = ''): Promise<void> {
    await this.onSession(shopJid, visitor, (tx, shop, session, states, now) =>
      this.transferIn(tx, shop, session, toAgent, reason, states, now));
  }

  /** Runs an admin action on one open session under its shop's lock and sends what it produced. */
  private async onSession(
    shopJid: string, visitor: string,
    action: (tx: ShopTx, shop: Shop, session: Session, states: Map<string, AgentState>, now: number) => Promise<XmlElement[]>,
  ): Promise<void> {
    const shop = this.requireShop(shopJid);
    const states = await this.agentStates(shop);
    const out = await this.store.withShop(shop.jid, async (tx) => {
      const session = await tx.getSession(visitor);
      if (!session) throw refuse('item-not-found', 'cancel', `no open session of ${visitor} with ${shop.jid}`);
      return action(tx, shop, session, states, this.now());
    });
    this.send(out);
  }

  /** Assigns waiting visitors of a shop while agents have room; called when capacity may have appeared. */
  async drainQueue(shopJid: string): Promise<void> {
    const shop = this.directory.shop(shopJid);
    if (!shop) return;
    const states = await this.agentStates(shop);
    this.send(await this.store.withShop(shop.jid, (tx) => this.serveQueue(tx, shop, states, this.now())));
  }

  /** Timers: offline agents' sessions, idle sessions, reminders; then the queue. */
  async tick(): Promise<void> {
    await this.directory.reload();
    const { agentReminderSec, idleCloseSec, offlineGraceSec } = this.config.timers;
    for (const shop of this.directory.allShops()) {
      const states = await this.agentStates(shop);
      const out = await this.store.withShop(shop.jid, async (tx) => {
        const now = this.now();
        const out: XmlElement[] = [];
        for (const s of await tx.sessions()) {
          if (!states.get(s.agent)?.keepsSessions) {
            if (!s.orphanedAt) await tx.putSession({ ...s, orphanedAt: now });
            else if (now - s.orphanedAt >= offlineGraceSec * 1000) out.push(...(await this.rehome(tx, shop, s, states, now)));
            continue;
          }
          if (s.orphanedAt) await tx.putSession({ ...s, orphanedAt: 0 });
          const lastActivity = Math.max(s.startedAt, s.lastVisitorAt, s.lastAgentAt);
          if (now - lastActivity >= idleCloseSec * 1000) {
            out.push(...(await this.closeIn(tx, shop, s, 'idle', now)));
          } else if (s.lastVisitorAt > s.lastAgentAt && s.remindedAt < s.lastVisitorAt && now - s.lastVisitorAt >= agentReminderSec * 1000) {
            await tx.putSession({ ...s, orphanedAt: 0, remindedAt: now });
            out.push(notice({ shop: shop.jid, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, text: `您有用户消息未回复：${s.visitor} 已等待 ${Math.round((now - s.lastVisitorAt) / 1000)} 秒。` }));
          }
        }
        out.push(...(await this.serveQueue(tx, shop, states, now)));
        return out;
      });
      this.send(out);
    }
  }

  // ---- under a shop's lock -----------------------------------------------------

  private async serveQueue(tx: ShopTx, shop: Shop, states: Map<string, AgentState>, now: number): Promise<XmlElement[]> {
    const out: XmlElement[] = [];
    for (const entry of await tx.queue()) {
      const agent = await this.choose(tx, shop, entry.visitor, states, now);
      if (!agent) break;
      const session = await this.open(tx, shop, entry.visitor, agent, now);
      await tx.dequeue(entry.visitor);
      out.push(this.welcome(shop, entry.visitor, now));
      for (const held of await tx.takeHeld(entry.visitor)) {
        const relayed = relay(parseElement(held.xml), this.toAgent(session, held.at));
        await tx.appendHistory(entry.visitor, { at: held.at, xml: serialize(relayed) }, HISTORY_KEEP);
        session.lastVisitorAt = held.at;
        out.push(relayed);
      }
      await tx.putSession(session);
    }
    return out;
  }

  private async choose(tx: ShopTx, shop: Shop, visitor: string, states: Map<string, AgentState>, now: number, exclude?: string): Promise<string | undefined> {
    const sessions = await tx.sessions();
    const lastAssigned = await tx.lastAssigned();
    const candidates = this.directory.membersOf(shop.jid)
      .filter((m) => m.agent !== exclude && states.get(m.agent)?.assignable)
      .map((m) => ({ agent: m.agent, max: m.maxSessions, load: sessions.filter((s) => s.agent === m.agent).length, lastAssignedAt: lastAssigned.get(m.agent) ?? m.joinedAt }))
      .filter((c) => c.load < c.max);
    const sticky = shop.strategy === 'sticky' ? await tx.stickyAgent(visitor, now) : undefined;
    return pickAgent(shop.strategy, candidates, sticky, this.random);
  }

  private async open(tx: ShopTx, shop: Shop, visitor: string, agent: string, now: number): Promise<Session> {
    const session: Session = { visitor, shop: shop.jid, agent, startedAt: now, lastVisitorAt: 0, lastAgentAt: 0, remindedAt: 0, orphanedAt: 0 };
    await tx.putSession(session);
    await tx.markAssigned(agent, now);
    return session;
  }

  private async closeIn(tx: ShopTx, shop: Shop, s: Session, reason: CloseReason, now: number): Promise<XmlElement[]> {
    await tx.deleteSession(s.visitor);
    await tx.clearHistory(s.visitor);
    await tx.setSticky(s.visitor, s.agent, now + this.config.timers.stickyTtlSec * 1000);
    const toVisitor = reason === 'idle' ? '由于长时间没有新消息，本次会话已结束。如需帮助请再次发送消息。' : '本次会话已结束，感谢您的咨询。';
    const toAgent = reason === 'idle' ? `与 ${s.visitor} 的会话因长时间无消息已关闭。` : `与 ${s.visitor} 的会话已关闭。`;
    return [
      notice({ shop: shop.jid, to: s.visitor, realfrom: s.agent, qchatid: QCHAT_TO_VISITOR, now, text: toVisitor }),
      notice({ shop: shop.jid, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, text: toAgent }),
    ];
  }

  private async transferIn(tx: ShopTx, shop: Shop, s: Session, toAgent: string, reason: string, states: Map<string, AgentState>, now: number): Promise<XmlElement[]> {
    const target = this.directory.membership(shop.jid, toAgent);
    if (!target) throw refuse('item-not-found', 'cancel', `${toAgent} is not an agent of ${shop.jid}`);
    if (toAgent === s.agent) throw refuse('conflict', 'cancel', `${toAgent} already serves ${s.visitor}`);
    if (!states.get(toAgent)?.assignable) throw refuse('recipient-unavailable', 'wait', `${toAgent} is not available to take chats`);
    const load = (await tx.sessions()).filter((x) => x.agent === toAgent).length;
    if (load >= target.maxSessions) throw refuse('resource-constraint', 'wait', `${toAgent} already has ${load} of ${target.maxSessions} sessions`);
    return this.handOver(tx, shop, s, toAgent, reason, now);
  }

  /** Moves a session to another agent: notices to all three, the recent history replayed to the new agent. */
  private async handOver(tx: ShopTx, shop: Shop, s: Session, toAgent: string, reason: string, now: number): Promise<XmlElement[]> {
    const from = s.agent;
    await tx.putSession({ ...s, agent: toAgent, remindedAt: 0, orphanedAt: 0 });
    await tx.markAssigned(toAgent, now);
    const because = reason ? `，原因：${reason}` : '';
    const history = (await tx.history(s.visitor)).map((h) => replay(parseElement(h.xml), toAgent, h.at, shop.jid));
    return [
      notice({ shop: shop.jid, to: s.visitor, realfrom: toAgent, qchatid: QCHAT_TO_VISITOR, now, text: `客服 ${from} 已将您的咨询转给客服 ${toAgent}，请稍候。` }),
      notice({ shop: shop.jid, to: from, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, autoReply: true, text: `与 ${s.visitor} 的会话已转给 ${toAgent}，请勿再回复。` }),
      notice({ shop: shop.jid, to: toAgent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now, text: `${from} 将 ${s.visitor} 的咨询转给了您${because}。最近的消息如下。` }),
      ...history,
    ];
  }

  /** The agent stayed offline past the grace period: another agent takes over, or the visitor waits again. */
  private async rehome(tx: ShopTx, shop: Shop, s: Session, states: Map<string, AgentState>, now: number): Promise<XmlElement[]> {
    const next = await this.choose(tx, shop, s.visitor, states, now, s.agent);
    if (next) return this.handOver(tx, shop, s, next, `${s.agent} 已离线`, now);
    await tx.deleteSession(s.visitor);
    await tx.enqueue(s.visitor, now);
    const position = await queuePosition(tx, s.visitor);
    return [notice({ shop: shop.jid, to: s.visitor, realfrom: shop.jid, qchatid: QCHAT_TO_VISITOR, now, autoReply: true, text: `客服暂时离线，已为您重新排队，您排在第 ${position} 位。` })];
  }

  // ---- helpers ---------------------------------------------------------------

  /** Availability is read before taking a shop's lock: it is advisory and owned by the shim's reports. */
  private async agentStates(shop: Shop): Promise<Map<string, AgentState>> {
    const members = this.directory.membersOf(shop.jid);
    const resources = await this.store.resources();
    const statuses = await Promise.all(members.map((m) => this.store.getAgent(m.agent)));
    return new Map(members.map((m, i) => [m.agent, agentState(statuses[i]?.status ?? 'standard', resources.filter((r) => r.agent === m.agent))]));
  }

  private requireShop(jid: string): Shop {
    const shop = this.directory.shop(bareJid(jid));
    if (!shop) throw refuse('item-not-found', 'cancel', `${jid} is not a shop`);
    return shop;
  }

  private welcome(shop: Shop, visitor: string, now: number): XmlElement {
    return autoReply({ shop: shop.jid, visitor, realfrom: this.config.systemJid, text: shop.welcome, now });
  }

  private toAgent(s: Session, now: number) {
    return { shop: s.shop, to: s.agent, realfrom: s.visitor, qchatid: QCHAT_TO_AGENT, now };
  }

  private toVisitor(s: Session, now: number) {
    return { shop: s.shop, to: s.visitor, realfrom: s.agent, qchatid: QCHAT_TO_VISITOR, now };
  }
}

async function queuePosition(tx: ShopTx, visitor: string): Promise<number> {
  return (await tx.queue()).findIndex((e) => e.visitor === visitor) + 1;
}

function statusCommand(stanza: XmlElement): AgentStatus | undefined {
  const body = findChild(stanza, 'body');
  const m = body && /^\/status\s+(\S+)\s*$/.exec(textOf(body).trim());
  return m && AGENT_STATUSES.includes(m[1] as AgentStatus) ? (m[1] as AgentStatus) : undefined;
}

/** Agent commands any XMPP client can type: `/close` (or `/end`), `/transfer <agent> [reason]`. */
export function parseCommand(text: string, shopJid: string): { name: 'close' } | { name: 'transfer'; to: string; reason: string } | undefined {
  const m = /^\/(close|end|transfer)(?:\s+(\S+))?(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (!m) return undefined;
  if (m[1] !== 'transfer') return { name: 'close' };
  if (!m[2]) return undefined;
  const to = m[2].includes('@') ? bareJid(m[2]) : `${m[2].toLowerCase()}@${shopJid.split('@')[1]}`;
  return { name: 'transfer', to, reason: (m[3] ?? '').trim() };
}
