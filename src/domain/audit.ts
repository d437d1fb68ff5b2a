// The audit log of admin actions: who (the admin token's name and role), what (method, path, route), on what (the
// shop, agent, visitor the request names), when, with what outcome (the HTTP status) and the resource before and
// after. An entry is begun before the change is made and finished once its answer is known (src/admin/audit.ts);
// MemoryAudit and SqlAudit (src/storage/) keep them, newest first, for a retention period.

/** What an admin token may do: read = GET only; operator = the day's work on sessions and agents; admin = everything. */
export const ROLES = ['read', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Whether a token of role `has` may call a route that needs `needs` (each role includes the ones before it). */
export const roleAllows = (has: Role, needs: Role): boolean => ROLES.indexOf(has) >= ROLES.indexOf(needs);

/** What a request names: path parameters and body fields of these names. */
export interface AuditTarget {
  shop?: string;
  agent?: string;
  visitor?: string;
  group?: string;
}

/** What is known before the handler runs. */
export interface AuditStart {
  at: number;
  token: string; // the token's name, never its value
  role: Role;
  method: string;
  path: string; // as requested, without the query
  route: string; // the route template: "PUT /shops/{shop}"
  target: AuditTarget;
}

/** What is known once the answer is: its status, and the resource before and after (secrets redacted). */
export interface AuditOutcome {
  status: number;
  target: AuditTarget;
  detail?: string; // a problem's detail
  request?: unknown; // the body as validated
  before?: unknown;
  after?: unknown;
}

/** An entry as stored and answered; status null: begun, but its outcome was never recorded (see docs/admin-api.md). */
export interface AuditEntry extends AuditStart {
  id: number;
  status: number | null;
  detail?: string;
  request?: unknown;
  before?: unknown;
  after?: unknown;
}

export interface AuditQuery {
  from?: number; // at or after (ms)
  to?: number; // at or before (ms)
  token?: string;
  target?: string; // any of the target's values
  before?: number; // entries with a smaller id (the page after the one that ended there)
  limit: number;
}

export interface AuditStore {
  /** Stores the start of an entry; its id. A failure means the change must not be made. */
  begin(start: AuditStart): Promise<number>;
  finish(id: number, outcome: AuditOutcome): Promise<void>;
  /** Newest first (by id). */
  search(q: AuditQuery): Promise<AuditEntry[]>;
  /** Deletes the entries older than `before` (ms); how many. */
  purge(before: number): Promise<number>;
}

export const targetValues = (t: AuditTarget): string[] =>
  [t.shop, t.agent, t.visitor, t.group].filter((v): v is string => typeof v === 'string');

/** The entry matches the query's filters (not its paging). */
export function auditMatches(e: AuditEntry, q: AuditQuery): boolean {
  if (q.from !== undefined && e.at < q.from) return false;
  if (q.to !== undefined && e.at > q.to) return false;
  if (q.token !== undefined && e.token !== q.token) return false;
  if (q.target !== undefined && !targetValues(e.target ?? {}).includes(q.target)) return false;
  if (q.before !== undefined && e.id >= q.before) return false;
  return true;
}

/** Keys whose values never reach the audit log (a bot's or a webhook's secret, a token, a password). */
const SECRET_KEY = /secret|token|password/i;
export const REDACTED = '[redacted]';

/** A JSON value with every secret-named key's value replaced by [redacted], at any depth. */
export function redact(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redact);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [k, SECRET_KEY.test(k) && x !== null && x !== undefined ? REDACTED : redact(x)]),
  );
}
