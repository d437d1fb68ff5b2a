// The admin HTTP API (named bearer tokens, each with a role), its OpenAPI document and Prometheus /metrics (no token)
// on one port, all dispatched from one route table. A client address that fails authentication too often is refused
// with 429 for the rest of its window; failures are logged, one line per address per interval with their count. A
// token whose role does not allow a route gets 403; every audited route's call is in the audit log (src/admin/audit.ts)
// before its answer is sent. Errors are RFC 9457 problems.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { ConsultError } from '../domain/decision.js';
import { NotOwner } from '../desk/desk.js';
import type { ShopLeases } from '../cluster/leases.js';
import type { Log } from '../domain/log.js';
import type { Metrics } from './metrics.js';
import { FailureWindow, ThrottledLog } from '../domain/throttle.js';
import { archiveRoutes } from './archive-routes.js';
import { openApiDocument } from './openapi.js';
import { HttpError, MEDIA_PROBLEM, PROBLEM_TYPES, type ShopOwner } from './problem.js';
import { Raw, type Route, WithHeaders, isAudited, route } from './routes.js';
import { Router, UNHEARD } from './router.js';
import { OpenApiDocument } from './schemas.js';
import { type ShopRouteDeps, shopRoutes } from './shop-routes.js';
import { leftRoutes } from './left-routes.js';
import { eventRoutes } from './event-routes.js';
import { visitorRoutes } from './visitor-routes.js';
import { type Listener, listen } from './listen.js';
import { shopLookup } from './shop-lookup.js';
import type { AuditStore } from '../domain/audit.js';
import { MemoryAudit } from '../storage/memory-audit.js';
import { type AuditCall, Auditor } from './audit.js';
import { auditRoutes } from './audit-routes.js';
import { type AdminToken, AdminTokens, type Principal, authorize } from './tokens.js';

/** Which sidecar decides a shop another sidecar holds (from its lease), and where its admin API is when known. */
export interface ShopOwners {
  ownerOf(shop: string): Promise<ShopOwner | undefined>;
}

/**
 * The owners named by the leases, on stores that have them (PostgreSQL; memory and PGlite decide every shop here).
 * `adminUrlOf`: where a sidecar's admin API is, when that is known.
 */
export function leaseOwners(
  leases: ShopLeases & { ownerOf?(shop: string): Promise<string | undefined> },
  adminUrlOf: (sidecar: string) => string | undefined = () => undefined,
): ShopOwners | undefined {
  if (!leases.ownerOf) return undefined;
  return {
    ownerOf: async (shop) => {
      const sidecar = await leases.ownerOf!(shop);
      if (sidecar === undefined) return undefined;
      const adminUrl = adminUrlOf(sidecar);
      return { sidecar, ...(adminUrl ? { adminUrl } : {}) };
    },
  };
}

export interface AdminDeps extends Omit<ShopRouteDeps, 'now'> {
  /** Names the owner in a 421 (stores with leases); without it the 421 says only that another sidecar decides. */
  owners?: ShopOwners;
  /** The named tokens and their roles. */
  tokens?: readonly AdminToken[];
  /** One more token, named admin, of role admin (the config's admin.token). */
  token?: string;
  /** Where the audit log is written (default: in memory). */
  audit?: AuditStore;
  /** Audit entries older than this are deleted, hourly (default 365 days). */
  auditRetentionMs?: number;
  log: Log;
  metrics?: Metrics;
  now?: () => number;
  /** Failed authentications one client address may make per window before it gets 429 (default 10 per 60 s). */
  authFailures?: { max: number; windowMs: number };
  /** At most one log line per address in this long about its failed authentications (default 60 s). */
  authLogIntervalMs?: number;
}

/** The whole table: the API's routes, then the document that describes them and /metrics. */
export function adminRoutes(deps: AdminDeps): Route[] {
  const routes = [
    ...shopRoutes({ ...deps, now: deps.now ?? Date.now }),
    ...leftRoutes(deps.desk, deps.directory),
    ...eventRoutes(deps.desk, deps.directory),
    ...visitorRoutes(deps.desk, deps.now ?? Date.now),
    ...archiveRoutes(deps.desk.archiver.store, shopLookup(deps.directory, deps.desk).requireShop),
    ...auditRoutes(auditStore(deps)),
    route({
      method: 'GET',
      path: '/metrics',
      operationId: 'getMetrics',
      summary: 'Prometheus metrics',
      tag: 'meta',
      access: 'public',
      ok: { description: 'the metrics', other: [{ type: 'text/plain', description: 'Prometheus text format' }] },
      problems: [404],
      handle: async () => {
        if (!deps.metrics) throw new HttpError(404, 'metrics are off');
        return new Raw(deps.metrics.registry.contentType, await deps.metrics.registry.metrics());
      },
    }),
  ];
  // The document describes every route, itself included; it holds no data, so it needs no token.
  let document: unknown;
  const self: Route = route({
    method: 'GET',
    path: '/openapi.json',
    operationId: 'getOpenApi',
    summary: 'This OpenAPI 3.1 document',
    tag: 'meta',
    access: 'public',
    ok: { description: 'the document', json: OpenApiDocument },
    handle: async () => (document ??= openApiDocument(all)) as never,
  });
  const all: Route[] = [...routes, self];
  return all;
}

/** The audit store of these deps: the one given, else one in memory (kept with the deps, so the routes share it). */
const memoryAudits = new WeakMap<AdminDeps, AuditStore>();
function auditStore(deps: AdminDeps): AuditStore {
  if (deps.audit) return deps.audit;
  let m = memoryAudits.get(deps);
  if (!m) memoryAudits.set(deps, (m = new MemoryAudit()));
  return m;
}

/** Every token of the deps: admin.token (named admin, role admin) first. */
export const tokensOf = (deps: Pick<AdminDeps, 'token' | 'tokens'>): AdminToken[] => [
  ...(deps.token ? [{ name: 'admin', role: 'admin' as const, token: deps.token }] : []),
  ...(deps.tokens ?? []),
];

const PURGE_EVERY_MS = 3600_000;

/** The client's address as the socket gives it (an IPv4 client of a dual-stack socket without its ::ffff: prefix). */
const clientAddress = (req: IncomingMessage) => (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:(?=\d+\.)/, '');

export function adminHandler(deps: AdminDeps) {
  const router = new Router(adminRoutes(deps));
  const tokens = new AdminTokens(tokensOf(deps));
  const now = deps.now ?? Date.now;
  const auditor = new Auditor(auditStore(deps), deps.log, now);
  const { max, windowMs } = deps.authFailures ?? { max: 10, windowMs: 60_000 };
  const failures = new FailureWindow(max, windowMs);
  const authLog = new ThrottledLog((address, count, intervalMs) => {
    const blocked = failures.blockedFor(address);
    deps.log.warn('admin API: failed authentication', {
      address,
      failures: count,
      ...(count > 1 ? { inLastSec: Math.round(intervalMs / 1000) } : {}),
      ...(blocked > 0 ? { refusedForSec: Math.ceil(blocked / 1000) } : {}),
    });
  }, deps.authLogIntervalMs ?? 60_000);

  const authenticate = (req: IncomingMessage): Principal => {
    // An address that failed too often is not even checked (a right guess among them would say nothing either).
    const address = clientAddress(req);
    const wait = failures.blockedFor(address);
    if (wait > 0) {
      authLog.note(address);
      const sec = Math.ceil(wait / 1000);
      throw new HttpError(
        429,
        `too many failed authentications from ${address}; try again in ${sec} s`,
        undefined,
        {},
        { 'retry-after': String(sec) },
      );
    }
    const who = tokens.principal(req.headers.authorization);
    if (!who) {
      failures.failed(address);
      authLog.note(address);
      throw new HttpError(401, 'missing or wrong bearer token', undefined, {}, { 'www-authenticate': 'Bearer' });
    }
    failures.succeeded(address);
    return who;
  };

  /**
   * ConsultError conditions → problems: unknown things are 404, a shop another sidecar decides 421 naming it (ask
   * that one's admin API), no database 503, every other refusal a 409.
   */
  const fromConsultError = async (e: ConsultError): Promise<HttpError> => {
    if (e instanceof NotOwner) {
      if (deps.desk.shops.storeUnreachable)
        return new HttpError(503, e.error.text, PROBLEM_TYPES.storeUnreachable, {}, { 'retry-after': '1' });
      const owner = await deps.owners?.ownerOf(e.shop).catch(() => undefined);
      const detail = owner
        ? `${e.shop} is decided by the sidecar ${owner.sidecar}; send this request to its admin API${owner.adminUrl ? ` at ${owner.adminUrl}` : ''}`
        : `${e.shop} is decided by another sidecar right now (its lease names none that is alive: it is being handed over); try again in a moment`;
      return new HttpError(421, detail, PROBLEM_TYPES.notDecidedHere, owner ? { owner } : {});
    }
    if (e.error.condition === 'item-not-found') return new HttpError(404, e.error.text);
    return new HttpError(409, e.error.text, PROBLEM_TYPES.refused);
  };

  const send = (res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { ...headers, 'content-type': type });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    let call: AuditCall | undefined;
    try {
      const match = router.match(req.method ?? 'GET', url.pathname);
      const who = match.route.access === 'admin' ? authenticate(req) : undefined;
      // Begun before anything else: a refused change is audited too, and no change is made without its entry.
      if (who && isAudited(match.route)) call = await auditor.begin(who, match, url.pathname);
      if (who) authorize(who, match.route);
      const input = await router.input(match, url.searchParams, req);
      call?.input(input);
      const out = await match.route.handle({ ...input, audit: call?.note ?? UNHEARD });
      await call?.finish(200, out);
      if (out instanceof Raw) return send(res, 200, out.type, out.body, out.headers);
      const [body, headers] = out instanceof WithHeaders ? [out.body, out.headers] : [out, {}];
      send(res, 200, 'application/json', `${JSON.stringify(body)}\n`, headers);
    } catch (e) {
      const err = e instanceof ConsultError ? await fromConsultError(e) : e;
      if (err instanceof HttpError) {
        await call?.finish(err.status, undefined, err.message);
        return send(res, err.status, MEDIA_PROBLEM, `${JSON.stringify(err.problem())}\n`, err.headers);
      }
      deps.log.error('admin request failed', { method: req.method, path: url.pathname, err: e });
      await call?.finish(500, undefined, 'internal error');
      send(res, 500, MEDIA_PROBLEM, `${JSON.stringify(new HttpError(500, 'internal error').problem())}\n`);
    }
  };
  // Entries past their retention are deleted at the start and hourly.
  const retentionMs = deps.auditRetentionMs ?? 365 * 86400_000;
  const purge = () =>
    void auditor.store.purge(now() - retentionMs).then(
      (n) => n && deps.log.info('audit log: entries past retention deleted', { deleted: n }),
      (e) => deps.log.warn('audit log: deleting entries past retention failed (tried again in an hour)', { err: e }),
    );
  purge();
  const purger = setInterval(purge, PURGE_EVERY_MS).unref();
  /** close(): the failures counted since their last log line are told now. */
  return Object.assign(handle, {
    close: () => {
      clearInterval(purger);
      authLog.flush();
    },
  });
}

export async function startAdminServer(deps: AdminDeps, host: string, port: number): Promise<Listener> {
  const handler = adminHandler(deps);
  return listen(
    createServer((req, res) => void handler(req, res)),
    host,
    port,
    () => handler.close(),
  );
}
