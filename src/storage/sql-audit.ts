// The audit log in PGlite or PostgreSQL: one row per admin request, the searchable fields as columns, the rest
// (target, detail, request, before, after) as JSON in `body` (table in src/storage/schema.ts).
import type { Queryable, Row } from './driver.js';
import { type AuditEntry, type AuditOutcome, type AuditQuery, type AuditStart, type AuditStore, targetValues } from '../domain/audit.js';

const toEntry = (r: Row): AuditEntry => ({
  id: Number(r.id),
  at: r.at,
  token: r.token,
  role: r.role,
  method: r.method,
  path: r.path,
  route: r.route,
  status: r.status === null ? null : Number(r.status),
  ...JSON.parse(r.body),
});

export class SqlAudit implements AuditStore {
  constructor(private readonly db: Queryable) {}

  async begin(s: AuditStart) {
    const [r] = await this.db.query(
      `INSERT INTO audit (at, token, role, method, path, route, targets, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
      [s.at, s.token, s.role, s.method, s.path, s.route, targetValues(s.target), JSON.stringify({ target: s.target })],
    );
    return Number(r.id);
  }

  async finish(id: number, { status, ...rest }: AuditOutcome) {
    await this.db.query(`UPDATE audit SET status = $2, targets = $3, body = $4 WHERE id = $1`, [
      id,
      status,
      targetValues(rest.target),
      JSON.stringify(rest),
    ]);
  }

  async search(q: AuditQuery) {
    const conds: string[] = [];
    const params: unknown[] = [];
    const add = (cond: string, v: unknown) => {
      params.push(v);
      conds.push(cond.replace('?', `$${params.length}`));
    };
    if (q.from !== undefined) add('at >= ?', q.from);
    if (q.to !== undefined) add('at <= ?', q.to);
    if (q.token !== undefined) add('token = ?', q.token);
    if (q.target !== undefined) add('? = ANY(targets)', q.target);
    if (q.before !== undefined) add('id < ?', q.before);
    params.push(q.limit);
    const rows = await this.db.query(
      `SELECT id, at, token, role, method, path, route, status, body FROM audit ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''}
       ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toEntry);
  }

  async purge(before: number) {
    return (await this.db.query(`DELETE FROM audit WHERE at < $1 RETURNING id`, [before])).length;
  }
}
