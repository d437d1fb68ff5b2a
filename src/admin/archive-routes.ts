// Admin routes over the archive: search (JSON or CSV export), one session, satisfaction stats.
import type { ArchiveRecord } from '../domain/archive.js';
import type { ArchiveQuery } from '../domain/archive.js';
import type { ArchiveStore } from '../desk/ports.js';
import { bareJid, isJid } from '../xmpp/jid.js';
import { type Handler, HttpError } from './routes.js';
import { Raw } from './routes.js';

const MAX_LIMIT = 10_000;

function jidOpt(q: URLSearchParams, k: string): string | undefined {
  const v = q.get(k);
  if (v === null) return undefined;
  if (!isJid(v) || !v.includes('@') || v.includes('/')) throw new HttpError(400, `${k} must be a bare JID (user@domain)`);
  return bareJid(v);
}

/** ms since the epoch, or an ISO 8601 date. */
function timeOpt(q: URLSearchParams, k: string): number | undefined {
  const v = q.get(k);
  if (v === null) return undefined;
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(t)) throw new HttpError(400, `${k} must be ms since the epoch or an ISO 8601 date`);
  return t;
}

function queryOf(q: URLSearchParams, requireShop: (jid: string) => unknown): ArchiveQuery {
  const shop = jidOpt(q, 'shop');
  if (shop) requireShop(shop);
  const limit = q.get('limit');
  if (limit !== null && !(/^\d+$/.test(limit) && Number(limit) >= 1 && Number(limit) <= MAX_LIMIT))
    throw new HttpError(400, `limit must be an integer in 1..${MAX_LIMIT}`);
  return {
    shop,
    visitor: jidOpt(q, 'visitor'),
    agent: jidOpt(q, 'agent'),
    from: timeOpt(q, 'from'),
    to: timeOpt(q, 'to'),
    limit: limit === null ? undefined : Number(limit),
  };
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
    for (const l of lines) rows.push([...head, l && iso(l.at), l?.role, l?.who, l?.text].map(cell).join(','));
  }
  return `${rows.join('\r\n')}\r\n`;
}

export function archiveRoutes(archive: ArchiveStore, requireShop: (jid: string) => unknown): [string, RegExp, Handler][] {
  return [
    [
      'GET',
      /^\/archive$/,
      async ({ query }) => {
        const format = query.get('format') ?? 'json';
        if (format !== 'json' && format !== 'csv') throw new HttpError(400, 'format must be one of json, csv');
        const records = await archive.search(queryOf(query, requireShop));
        return format === 'csv' ? new Raw('text/csv; charset=utf-8', toCsv(records)) : records;
      },
    ],
    [
      'GET',
      /^\/archive\/([^/]+)$/,
      async ({ params }) => {
        const r = await archive.get(params[0]);
        if (!r) throw new HttpError(404, `no archived session ${params[0]}`);
        return r;
      },
    ],
    [
      'GET',
      /^\/stats$/,
      async ({ query }) => {
        const { shop, from, to } = queryOf(query, requireShop);
        return archive.stats({ shop, from, to });
      },
    ],
  ];
}
