// Admin routes over the archive: search (JSON or CSV export) a page at a time, one session, satisfaction stats.
import type { ArchivePosition, ArchiveRecord } from '../domain/archive.js';
import type { ArchiveStore } from '../desk/ports.js';
import { badField } from './problem.js';
import { Raw, type Route, WithHeaders, adminRoute } from './routes.js';
import { ArchiveIdParams, ArchivePage, ArchiveQuery, ArchiveRecordView, StatsQuery, StatsView } from './schemas.js';
import { HttpError } from './problem.js';

// A cursor is a session's place in the order, opaque to clients (base64url JSON), so the order can change shape.
const encodeCursor = (r: ArchivePosition) => Buffer.from(JSON.stringify([r.endedAt, r.id])).toString('base64url');
function decodeCursor(cursor: string): ArchivePosition {
  try {
    const [endedAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof endedAt === 'number' && Number.isFinite(endedAt) && typeof id === 'string') return { endedAt, id };
  } catch {
    // not ours: answered below
  }
  throw badField('query', 'cursor', 'is not a cursor this API gave (pass the `next` of the page before)');
}

const CSV_COLUMNS = [
  'id',
  'shop',
  'visitor',
  'agent',
  'agents',
  'group',
  'started_at',
  'ended_at',
  'close_reason',
  'rating',
  'queue_wait_ms',
  'first_response_ms',
  'at',
  'role',
  'who',
  'text',
  'tags', // last: a later column never moves the earlier ones
];

/** RFC 4180 quoting; a leading = + - @ is defused so a spreadsheet does not run it as a formula. */
function cell(v: unknown): string {
  let s = v === undefined || v === null ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per transcript line, the session's fields repeated on each (a session without lines: one row). */
export function toCsv(records: ArchiveRecord[]): string {
  const iso = (t: number) => new Date(t).toISOString();
  const rows = [CSV_COLUMNS.join(',')];
  for (const r of records) {
    const head = [
      r.id,
      r.shop,
      r.visitor,
      r.agent,
      r.agents.join(' '),
      r.group,
      iso(r.startedAt),
      iso(r.endedAt),
      r.closeReason,
      r.rating,
      r.queueWaitMs,
      r.firstResponseMs,
    ];
    const lines = r.lines.length ? r.lines : [undefined];
    const tags = (r.tags ?? []).join(' ');
    for (const l of lines) rows.push([...head, l && iso(l.at), l?.role, l?.who, l?.text, tags].map(cell).join(','));
  }
  return `${rows.join('\r\n')}\r\n`;
}

export function archiveRoutes(archive: ArchiveStore, requireShop: (jid: string) => unknown): Route[] {
  const archiveRoute = adminRoute('archive');
  return [
    archiveRoute({
      method: 'GET',
      path: '/archive',
      operationId: 'searchArchive',
      summary: 'Closed sessions with their transcripts, a page at a time',
      description:
        'Newest first (by end, then id). `next` is the cursor of the following page (null on the last); the Link header ' +
        'carries it too, as the URL of that page, which is how a CSV export is paged.',
      query: ArchiveQuery,
      ok: {
        description: 'a page of sessions',
        json: ArchivePage,
        other: [{ type: 'text/csv', description: 'format=csv: one row per transcript line (RFC 4180)' }],
        headers: { Link: { description: 'rel="next": the URL of the next page, when there is one', schema: { type: 'string' } } },
      },
      problems: [404],
      handle: async ({ query: q }) => {
        if (q.shop) requireShop(q.shop);
        const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
        const filter = { shop: q.shop, visitor: q.visitor, agent: q.agent, from: q.from, to: q.to, tag: q.tag, context: q.context };
        const found = await archive.search({ ...filter, after, limit: q.limit + 1 });
        const items = found.slice(0, q.limit);
        const next = found.length > q.limit ? encodeCursor(items[items.length - 1]) : null;
        const headers: Record<string, string> = {};
        if (next) {
          const more = new URLSearchParams();
          for (const [k, v] of Object.entries({ ...filter, limit: q.limit, format: q.format, cursor: next }))
            if (v !== undefined) more.set(k, String(v));
          headers.link = `</archive?${more}>; rel="next"`;
        }
        if (q.format === 'csv') return new Raw('text/csv; charset=utf-8', toCsv(items), headers);
        return new WithHeaders({ items, next }, headers);
      },
    }),
    archiveRoute({
      method: 'GET',
      path: '/archive/{id}',
      operationId: 'getArchived',
      summary: 'One archived session',
      params: ArchiveIdParams,
      ok: { description: 'the session', json: ArchiveRecordView },
      problems: [404],
      handle: async ({ params }) => {
        const r = await archive.get(params.id);
        if (!r) throw new HttpError(404, `no archived session ${params.id}`);
        return r;
      },
    }),
    archiveRoute({
      method: 'GET',
      path: '/stats',
      operationId: 'getStats',
      summary: 'CSAT, first response, handle time and queue wait per shop and per shop and agent',
      query: StatsQuery,
      ok: { description: 'per shop (agent null) and per shop and agent', json: StatsView },
      problems: [404],
      handle: async ({ query: { shop, from, to, tag } }) => {
        if (shop) requireShop(shop);
        return archive.stats({ shop, from, to, tag });
      },
    }),
  ];
}
