// Shops, agents, memberships and presence on SQL (PGlite or PostgreSQL through src/storage/driver.ts); behaves
// exactly like MemoryStore: `seq` columns keep its insertion order (an upsert keeps its row's place).
import { DEFAULT_BOT, DEFAULT_LIMITS, type Agent, type AgentResource, type Membership, type Shop } from '../domain/shop.js';
import type { Store } from '../desk/ports.js';
import type { Row, Driver } from './driver.js';
import { migrate } from './schema.js';

const toShop = (r: Row): Shop => ({
  jid: r.jid,
  name: r.name,
  welcome: r.welcome,
  noAgentText: r.no_agent_text,
  strategy: r.strategy,
  queueEnabled: r.queue_enabled,
  limits: { ...DEFAULT_LIMITS, ...JSON.parse(r.limits || '{}') },
  language: r.language,
  texts: JSON.parse(r.texts || '{}'),
  groups: JSON.parse(r.groups || '[]'),
  bot: { ...DEFAULT_BOT, ...JSON.parse(r.bot || '{}') },
  ...(r.hours ? { hours: JSON.parse(r.hours) } : {}),
  ...(r.queue_max_wait_sec ? { queueMaxWaitSec: r.queue_max_wait_sec } : {}),
  ...(r.answer_timeout_sec !== null ? { answerTimeoutSec: r.answer_timeout_sec } : {}),
  ...(r.max_missed_chats !== null ? { maxMissedChats: r.max_missed_chats } : {}),
  ...supervisorsOf(r),
  ...cannedOf(r),
  ...(r.events ? { events: JSON.parse(r.events) } : {}),
});

function supervisorsOf(r: Row): Pick<Shop, 'supervisors'> {
  const list: string[] = JSON.parse(r.supervisors || '[]');
  return list.length > 0 ? { supervisors: list } : {};
}

function cannedOf(r: Row): Pick<Shop, 'canned'> {
  const canned: Record<string, string> = JSON.parse(r.canned || '{}');
  return Object.keys(canned).length > 0 ? { canned } : {};
}

export class SqlStore implements Store {
  private constructor(readonly db: Driver) {}

  static async open(db: Driver): Promise<SqlStore> {
    await db
      .transaction((q) => migrate(q))
      .catch(async (err) => {
        await db.close().catch(() => undefined);
        throw err;
      });
    return new SqlStore(db);
  }

  async listShops() {
    return (await this.db.query(`SELECT * FROM shops ORDER BY seq`)).map(toShop);
  }
  async getShop(jid: string) {
    const [r] = await this.db.query(`SELECT * FROM shops WHERE jid = $1`, [jid]);
    return r && toShop(r);
  }
  async putShop(s: Shop) {
    await this.db.query(
      `INSERT INTO shops (jid, name, welcome, no_agent_text, strategy, queue_enabled, limits, language, texts, groups, bot,
         hours, queue_max_wait_sec, answer_timeout_sec, max_missed_chats, supervisors, canned, events)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
       ON CONFLICT (jid) DO UPDATE SET name = $2, welcome = $3, no_agent_text = $4, strategy = $5, queue_enabled = $6,
         limits = $7, language = $8, texts = $9, groups = $10, bot = $11, hours = $12, queue_max_wait_sec = $13,
         answer_timeout_sec = $14, max_missed_chats = $15, supervisors = $16, canned = $17, events = $18`,
      [
        s.jid,
        s.name,
        s.welcome,
        s.noAgentText,
        s.strategy,
        s.queueEnabled,
        JSON.stringify(s.limits),
        s.language,
        JSON.stringify(s.texts),
        JSON.stringify(s.groups ?? []),
        JSON.stringify(s.bot ?? DEFAULT_BOT),
        s.hours ? JSON.stringify(s.hours) : '',
        s.queueMaxWaitSec ?? 0,
        s.answerTimeoutSec ?? null,
        s.maxMissedChats ?? null,
        JSON.stringify(s.supervisors ?? []),
        JSON.stringify(s.canned ?? {}),
        s.events === undefined ? '' : JSON.stringify(s.events),
      ],
    );
  }
  async deleteShop(jid: string) {
    await this.db.transaction(async (q) => {
      await q.query(`DELETE FROM shops WHERE jid = $1`, [jid]);
      await q.query(`DELETE FROM memberships WHERE shop = $1`, [jid]);
    });
  }

  async memberships() {
    return (await this.db.query(`SELECT shop, agent, max_sessions, joined_at FROM memberships ORDER BY seq`)).map(
      (r): Membership => ({ shop: r.shop, agent: r.agent, maxSessions: r.max_sessions, joinedAt: r.joined_at }),
    );
  }
  async putMembership(m: Membership) {
    await this.db.query(
      `INSERT INTO memberships (shop, agent, max_sessions, joined_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (shop, agent) DO UPDATE SET max_sessions = $3, joined_at = $4`,
      [m.shop, m.agent, m.maxSessions, m.joinedAt],
    );
  }
  async deleteMembership(shop: string, agent: string) {
    await this.db.query(`DELETE FROM memberships WHERE shop = $1 AND agent = $2`, [shop, agent]);
  }

  async getAgent(jid: string) {
    const [r] = await this.db.query(`SELECT jid, status FROM agents WHERE jid = $1`, [jid]);
    return r && ({ jid: r.jid, status: r.status } as Agent);
  }
  async listAgents() {
    return (await this.db.query(`SELECT jid, status FROM agents ORDER BY seq`)).map((r) => ({ jid: r.jid, status: r.status }) as Agent);
  }
  async putAgent(a: Agent) {
    await this.db.query(`INSERT INTO agents (jid, status) VALUES ($1, $2) ON CONFLICT (jid) DO UPDATE SET status = $2`, [a.jid, a.status]);
  }

  async setResource(r: AgentResource) {
    await this.db.query(
      `INSERT INTO resources (agent, resource, node, show, priority) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (agent, resource) DO UPDATE SET node = $3, show = $4, priority = $5`,
      [r.agent, r.resource, r.node, r.show, r.priority],
    );
  }
  async removeResource(agent: string, resource: string) {
    await this.db.query(`DELETE FROM resources WHERE agent = $1 AND resource = $2`, [agent, resource]);
  }
  async clearNode(node: string) {
    await this.db.query(`DELETE FROM resources WHERE node = $1`, [node]);
  }
  async resources() {
    return (await this.db.query(`SELECT agent, resource, node, show, priority FROM resources ORDER BY seq`)).map(
      (r): AgentResource => ({ agent: r.agent, resource: r.resource, node: r.node, show: r.show, priority: r.priority }),
    );
  }

  async close() {
    await this.db.close();
  }
}
