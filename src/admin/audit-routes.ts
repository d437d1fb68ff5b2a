// GET /audit: the audit log, newest first, a page at a time (cursor paging as GET /archive).
import { z } from 'zod';
import type { AuditStore } from '../domain/audit.js';
import { badField } from './problem.js';
import { type Route, WithHeaders, adminRoute } from './routes.js';
import { DEFAULT_PAGE, MAX_PAGE, Time } from './schemas.js';
import { ROLES } from '../domain/audit.js';

const pageLimit = `must be an integer in 1..${MAX_PAGE}`;
export const AuditQuery = z.strictObject({
  from: Time.optional().meta({ description: 'entries made at or after' }),
  to: Time.optional().meta({ description: 'entries made at or before' }),
  token: z.string().min(1).max(64).optional().meta({ description: 'entries of the token of this name' }),
  target: z.string().min(1).max(3071).optional().meta({ description: 'entries naming this shop, agent, visitor or group' }),
  limit: z.coerce
    .number()
    .int({ error: pageLimit })
    .min(1, { error: pageLimit })
    .max(MAX_PAGE, { error: pageLimit })
    .default(DEFAULT_PAGE)
    .meta({ description: `entries on this page (default ${DEFAULT_PAGE})` }),
  cursor: z.string().min(1).max(500).optional().meta({ description: 'where the page starts: the `next` of the page before (opaque)' }),
});

const TargetView = z.strictObject({
  shop: z.string().optional(),
  agent: z.string().optional(),
  visitor: z.string().optional(),
  group: z.string().optional(),
});
export const AuditEntryView = z.strictObject({
  id: z.int(),
  at: z.number().meta({ description: 'when the request came (ms since the epoch)' }),
  token: z.string().meta({ description: 'the name of the token that made it' }),
  role: z.enum(ROLES),
  method: z.string(),
  path: z.string(),
  route: z.string().meta({ description: 'the route: method and path template, e.g. PUT /shops/{shop}' }),
  target: TargetView,
  status: z.int().nullable().meta({ description: 'the answer’s HTTP status; null: the outcome could not be recorded' }),
  detail: z.string().optional().meta({ description: 'a refusal’s problem detail' }),
  request: z.unknown().optional().meta({ description: 'the body as validated (secrets redacted)' }),
  before: z.unknown().optional().meta({ description: 'the resource before (null: it did not exist)' }),
  after: z.unknown().optional().meta({ description: 'the resource after (null: it is gone)' }),
});
export const AuditPage = z.strictObject({
  items: z.array(AuditEntryView).meta({ description: 'newest first' }),
  next: z.string().nullable().meta({ description: 'the cursor of the next page; null: this is the last' }),
});

// A cursor is the id the next page starts below, opaque to clients (base64url JSON), as the archive's.
const encodeCursor = (id: number) => Buffer.from(JSON.stringify([id])).toString('base64url');
function decodeCursor(cursor: string): number {
  try {
    const [id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (Number.isSafeInteger(id)) return id as number;
  } catch {
    // not ours: answered below
  }
  throw badField('query', 'cursor', 'is not a cursor this API gave (pass the `next` of the page before)');
}

export function auditRoutes(audit: AuditStore): Route[] {
  return [
    adminRoute('audit')({
      method: 'GET',
      path: '/audit',
      operationId: 'searchAudit',
      summary: 'The audit log of admin actions, newest first, a page at a time',
      description:
        'Every change made with a token (and every visitor export), whatever its outcome: who (the token’s name and role), what ' +
        '(method, path, route), on what (target), when, the status, and the resource before and after (secrets redacted). ' +
        'status null: the entry was begun but its outcome could not be recorded. `next` is the cursor of the following page.',
      role: 'admin',
      query: AuditQuery,
      ok: {
        description: 'a page of entries',
        json: AuditPage,
        headers: { Link: { description: 'rel="next": the URL of the next page, when there is one', schema: { type: 'string' } } },
      },
      handle: async ({ query: q }) => {
        const before = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
        const filter = { from: q.from, to: q.to, token: q.token, target: q.target };
        const found = await audit.search({ ...filter, before, limit: q.limit + 1 });
        const items = found.slice(0, q.limit);
        const next = found.length > q.limit ? encodeCursor(items[items.length - 1].id) : null;
        const headers: Record<string, string> = {};
        if (next) {
          const more = new URLSearchParams();
          for (const [k, v] of Object.entries({ ...filter, limit: q.limit, cursor: next })) if (v !== undefined) more.set(k, String(v));
          headers.link = `</audit?${more}>; rel="next"`;
        }
        return new WithHeaders({ items, next }, headers);
      },
    }),
  ];
}
