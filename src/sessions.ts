// Consult sessions: one per (visitor, shop), served by one agent.
import { LRUCache } from 'lru-cache';

export interface Session {
  visitor: string; // bare JID
  shop: string; // bare JID
  agent: string; // bare JID
  startedAt: number; // ms since epoch
  lastVisitorAt: number;
  lastAgentAt: number;
}

/** Storage behind the router; async so a database can stand behind it. */
export interface SessionStore {
  get(visitor: string, shop: string): Promise<Session | undefined>;
  put(session: Session): Promise<void>;
  delete(visitor: string, shop: string): Promise<void>;
  byAgent(agent: string): Promise<Session[]>;
}

const key = (visitor: string, shop: string) => `${visitor}\n${shop}`;

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Session>();

  async get(visitor: string, shop: string) {
    const s = this.sessions.get(key(visitor, shop));
    return s && { ...s };
  }
  async put(session: Session) {
    this.sessions.set(key(session.visitor, session.shop), { ...session });
  }
  async delete(visitor: string, shop: string) {
    this.sessions.delete(key(visitor, shop));
  }
  async byAgent(agent: string) {
    return [...this.sessions.values()].filter((s) => s.agent === agent).map((s) => ({ ...s }));
  }
}

/** Read-through LRU in front of a store; every write goes through it, so it never holds a stale copy of its own writes. */
export class CachedSessionStore implements SessionStore {
  private readonly cache: LRUCache<string, Session>;

  constructor(private readonly inner: SessionStore, max = 10_000) {
    this.cache = new LRUCache({ max });
  }
  async get(visitor: string, shop: string) {
    const k = key(visitor, shop);
    const hit = this.cache.get(k);
    if (hit) return { ...hit };
    const s = await this.inner.get(visitor, shop);
    if (s) this.cache.set(k, { ...s });
    return s;
  }
  async put(session: Session) {
    await this.inner.put(session);
    this.cache.set(key(session.visitor, session.shop), { ...session });
  }
  async delete(visitor: string, shop: string) {
    await this.inner.delete(visitor, shop);
    this.cache.delete(key(visitor, shop));
  }
  byAgent(agent: string) {
    return this.inner.byAgent(agent);
  }
}
