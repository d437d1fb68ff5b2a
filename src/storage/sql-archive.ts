// The archive in PGlite or PostgreSQL: one row per closed session, its transcript as JSON in `body`,
// the searchable fields as columns (table in SCHEMA of src/storage/sql-store.ts).
import type { Queryable } from './driver.js';
import type { ArchiveRecord } from '../domain/archive.js';
import { SEARCH_LIMIT, type ArchiveQuery, type ArchiveStats, type Rating } from '../domain/archive.js';
import type { ArchiveStore } from '../desk/ports.js';
import { contextSearchText } from '../domain/context.js';

type Row = Record<string, any>;
const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function where(q: ArchiveQuery): { sql: string; params: unknown[] } {
  const conds: string[] = [];
  const params: unknown[] = [];
  const add = (cond: string, v: unknown) => {
    params.push(v);
    conds.push(cond.replace('?', `$${params.length}`));
  };
  if (q.shop) add('shop = ?', q.shop);
  if (q.visitor) add('visitor = ?', q.visitor);
  if (q.agent) add('? = ANY(agents)', q.agent);
  if (q.tag) add('tags @> ARRAY[?]::text[]', q.tag);
  if (q.context) add('position(? in context) > 0', q.context.toLowerCase()); // context: lower-cased "name value" lines
  if (q.from !== undefined) add('ended_at >= ?', q.from);
  if (q.to !== undefined) add('started_at <= ?', q.to);
  if (q.after !== undefined) {
    // The row order (ended_at DESC, id DESC) continued after the given session.
    params.push(q.after.endedAt, q.after.id);
    conds.push(`(ended_at, id) < ($${params.length - 1}, $${params.length})`);
  }
  return { sql: conds.length ? `WHERE ${conds.join(' AND ')}` : '', params };
}

const toRecord = (r: Row): ArchiveRecord => ({
  ...JSON.parse(r.body),
  tags: r.tags ?? [],
  ...(r.rating !== null ? { rating: r.rating, ratedAt: r.rated_at } : {}),
});

export class SqlArchive implements ArchiveStore {
  constructor(private readonly db: Queryable) {}

  async put(records: ArchiveRecord[]) {
    for (const r of records) {
      const { rating: _r, ratedAt: _a, ...body } = r;
      await this.db.query(
        `INSERT INTO archive (id, shop, visitor, agent, agents, grp, started_at, ended_at, queue_wait_ms, first_response_ms,
           close_reason, body, tags, context) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (id) DO UPDATE SET body = $12, tags = $13, context = $14`,
        [
          r.id,
          r.shop,
          r.visitor,
          r.agent,
          r.agents,
          r.group,
          r.startedAt,
          r.endedAt,
          r.queueWaitMs,
          r.firstResponseMs,
          r.closeReason,
          JSON.stringify(body),
          r.tags ?? [],
          contextSearchText(r.context),
        ],
      );
    }
  }

  async rate(ratings: Rating[]) {
    for (const x of ratings) await this.db.query(`UPDATE archive SET rating = $2, rated_at = $3 WHERE id = $1`, [x.id, x.score, x.at]);
  }

  async search(q: ArchiveQuery) {
    const w = where(q);
    const rows = await this.db.query(
      `SELECT body, rating, rated_at, tags FROM archive ${w.sql} ORDER BY ended_at DESC, id DESC LIMIT ${q.limit ?? SEARCH_LIMIT}`,
      w.params,
    );
    return rows.map(toRecord);
  }

  async get(id: string) {
    const [r] = await this.db.query(`SELECT body, rating, rated_at, tags FROM archive WHERE id = $1`, [id]);
    return r && toRecord(r);
  }

  async forgetVisitor(visitor: string) {
    return (await this.db.query(`DELETE FROM archive WHERE visitor = $1 RETURNING id`, [visitor])).length;
  }

  async purge(before: number) {
    const rows = await this.db.query(`DELETE FROM archive WHERE ended_at < $1 RETURNING id`, [before]);
    return rows.length;
  }

  async stats(q: Pick<ArchiveQuery, 'shop' | 'from' | 'to' | 'tag'>) {
    const w = where(q);
    const rows = await this.db.query(
      `SELECT shop, agent, count(*) AS sessions, count(rating) AS rated,
         avg(CASE WHEN rating >= 4 THEN 1.0 WHEN rating IS NOT NULL THEN 0.0 END) AS csat, avg(rating) AS avg_rating,
         avg(first_response_ms) AS frt, avg(ended_at - started_at) AS handle, avg(queue_wait_ms) AS wait
       FROM archive ${w.sql} GROUP BY GROUPING SETS ((shop), (shop, agent)) ORDER BY shop, agent NULLS FIRST`,
      w.params,
    );
    return rows.map(
      (r): ArchiveStats => ({
        shop: r.shop,
        agent: r.agent ?? null,
        sessions: Number(r.sessions),
        rated: Number(r.rated),
        csat: num(r.csat),
        avgRating: num(r.avg_rating),
        avgFirstResponseMs: num(r.frt),
        avgHandleMs: num(r.handle) ?? 0,
        avgQueueWaitMs: num(r.wait) ?? 0,
      }),
    );
  }
}
