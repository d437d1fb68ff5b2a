// Decides what happens to one stanza the shim forwarded: the consult rules of QChat.
import type { Config, ShopConfig } from './config.js';
import { Directory } from './directory.js';
import { bareJid } from './jid.js';
import { KeyedLock } from './lock.js';
import type { Session, SessionStore } from './sessions.js';
import {
  QCHAT_TO_AGENT, QCHAT_TO_VISITOR, ack, autoReply, ensureBodyId, relay, withoutRealAddresses,
} from './stanzas.js';
import { XmlError, findChild, parseElement, type XmlElement } from './xml.js';

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

const PASS: Decision = { action: 'pass', extra: [] };
const reject = (condition: string, type: StanzaErrorInfo['type'], text: string): Decision => ({
  action: 'reject', error: { condition, type, text }, extra: [],
});

export class ConsultRouter {
  private readonly directory: Directory;
  private readonly shopLocks = new KeyedLock();
  private readonly roundRobin = new Map<string, number>();

  constructor(
    private readonly config: Config,
    private readonly sessions: SessionStore,
    private readonly now: () => number = Date.now,
  ) {
    this.directory = new Directory(config.shops);
  }

  watchList() {
    return this.directory.watchList();
  }

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
      return this.shopLocks.run(shop.jid, () =>
        this.directory.agentOf(shop, from) ? this.fromAgent(stanza, shop, from, type) : this.fromVisitor(stanza, shop, from, type));
    }
    if (type === 'consult') return reject('item-not-found', 'cancel', `${bareJid(stanza.attrs.to)} is not a shop; consult messages go to a shop JID`);
    // A readmark straight between a visitor and an agent: deliver it, but realfrom/realto are the server's to set.
    if ('realfrom' in stanza.attrs || 'realto' in stanza.attrs) {
      return { action: 'rewrite', stanza: withoutRealAddresses(stanza), extra: [] };
    }
    return PASS;
  }

  private async fromVisitor(stanza: XmlElement, shop: ShopConfig, visitor: string, type: string): Promise<Decision> {
    const now = this.now();
    let session = await this.sessions.get(visitor, shop.jid);
    const hasBody = findChild(stanza, 'body') !== undefined;

    if (type === 'readmark') {
      if (!session) return { action: 'drop', extra: [] };
      return { action: 'rewrite', stanza: relay(stanza, this.toAgent(session, now), 'readmark'), extra: [] };
    }
    // Typing notifications and the like never open a session.
    if (!session && !hasBody) return { action: 'drop', extra: [] };

    const extra: XmlElement[] = [];
    const bodyId = ensureBodyId(stanza);
    if (bodyId) extra.push(ack(visitor, bodyId, now));

    if (!session) {
      const agent = await this.pickAgent(shop);
      if (!agent) {
        extra.push(autoReply({ shop: shop.jid, visitor, realfrom: shop.jid, text: shop.noAgentText, now }));
        return { action: 'drop', extra };
      }
      session = { visitor, shop: shop.jid, agent, startedAt: now, lastVisitorAt: now, lastAgentAt: 0 };
      extra.push(autoReply({ shop: shop.jid, visitor, realfrom: this.config.systemJid, text: shop.welcome, now }));
    }
    if (hasBody) session.lastVisitorAt = now;
    await this.sessions.put(session);
    return { action: 'rewrite', stanza: relay(stanza, this.toAgent(session, now)), extra };
  }

  private async fromAgent(stanza: XmlElement, shop: ShopConfig, agent: string, type: string): Promise<Decision> {
    const now = this.now();
    const found = await this.servedVisitor(stanza, shop, agent);
    if ('error' in found) {
      // Only content deserves an error; a stray typing notification is just dropped.
      return findChild(stanza, 'body') || type === 'readmark' ? { action: 'reject', error: found.error, extra: [] } : { action: 'drop', extra: [] };
    }
    const session = found.session;
    const extra: XmlElement[] = [];
    const bodyId = type === 'readmark' ? undefined : ensureBodyId(stanza);
    if (bodyId) {
      extra.push(ack(agent, bodyId, now));
      session.lastAgentAt = now;
      await this.sessions.put(session);
    }
    const address = { shop: shop.jid, to: session.visitor, realfrom: agent, realto: session.visitor, qchatid: QCHAT_TO_VISITOR, now };
    return { action: 'rewrite', stanza: relay(stanza, address, type === 'readmark' ? 'readmark' : 'consult'), extra };
  }

  /** The visitor an agent's message is for: its realto, or its only session in the shop. Never a guess. */
  private async servedVisitor(stanza: XmlElement, shop: ShopConfig, agent: string): Promise<{ session: Session } | { error: StanzaErrorInfo }> {
    const realto = stanza.attrs.realto;
    if (realto) {
      const session = await this.sessions.get(bareJid(realto), shop.jid);
      if (session?.agent === agent) return { session };
      return { error: { condition: 'forbidden', type: 'auth', text: `you are not serving ${bareJid(realto)} for ${shop.jid}` } };
    }
    const mine = (await this.sessions.byAgent(agent)).filter((s) => s.shop === shop.jid);
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

  private toAgent(session: Session, now: number) {
    return { shop: session.shop, to: session.agent, realfrom: session.visitor, realto: session.agent, qchatid: QCHAT_TO_AGENT, now };
  }

  /** Least busy agent with a free slot; ties rotate so no agent takes every new chat. */
  private async pickAgent(shop: ShopConfig): Promise<string | undefined> {
    const loads = await Promise.all(shop.agents.map(async (a) => ({ a, load: (await this.sessions.byAgent(a.jid)).length })));
    const free = loads.filter((x) => x.load < x.a.maxSessions);
    if (free.length === 0) return undefined;
    const least = Math.min(...free.map((x) => x.load));
    const tied = free.filter((x) => x.load === least);
    const turn = this.roundRobin.get(shop.jid) ?? 0;
    this.roundRobin.set(shop.jid, turn + 1);
    return tied[turn % tied.length].a.jid;
  }
}

