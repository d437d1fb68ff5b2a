// Admin HTTP JSON API (bearer token) and Prometheus /metrics (no auth) on one port. A client address that fails
// authentication too often is refused with 429 for the rest of its window; failures are logged, one line per address
// per interval with their count.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import { ConsultError } from '../domain/decision.js';
import { NotOwner, type Desk } from '../desk/desk.js';
import type { Ownership } from '../cluster/ownership.js';
import type { Directory } from '../desk/directory.js';
import type { WatchList } from '../cluster/watch-list.js';
import type { Log } from '../domain/log.js';
import type { Metrics } from './metrics.js';
import type { Presence } from '../desk/presence.js';
import type { Limits } from '../domain/shop.js';
import { DEFAULT_NO_AGENT_TEXT, LANGUAGES, textProblem, type Texts } from '../domain/texts.js';
import { AGENT_STATUSES, LIMIT_RANGES, STRATEGIES, type Shop } from '../domain/shop.js';
import type { Store } from '../desk/ports.js';
import { bareJid, isJid } from '../xmpp/jid.js';
import { archiveRoutes } from './archive-routes.js';
import { Raw } from './routes.js';
import { OptionError, checkGroups, parseBot, parseGroup, parseGroups } from '../domain/shop-options.js';
import { HttpError, type Body, type Handler } from './routes.js';
import { FailureWindow, ThrottledLog } from '../domain/throttle.js';

export interface AdminDeps {
  store: Store;
  directory: Directory;
  desk: Desk;
  presence: Presence;
  /** Told after every shop or agent change. */
  watch: WatchList;
  /** Adopts a new shop (or lets its owner do so) right after it is added. */
  ownership: Ownership;
  token: string;
  log: Log;
  metrics?: Metrics;
  /** Limits of a new shop that names none (the config's defaults). */
  defaultLimits: Limits;
  now?: () => number;
  /** Failed authentications one client address may make per window before it gets 429 (default 10 per 60 s). */
  authFailures?: { max: number; windowMs: number };
  /** At most one log line per address in this long about its failed authentications (default 60 s). */
  authLogIntervalMs?: number;
}

// ---- validation: 400s that name the field -------------------------------------
const bad = (field: string, what: string) => new HttpError(400, `${field} must be ${what}`);
function jidParam(value: string | null | undefined, field: string): string {
  if (typeof value !== 'string' || !isJid(value) || value.includes('/') || !value.includes('@'))
    throw bad(field, 'a bare JID (user@domain)');
  return bareJid(value);
}
function optStr(b: Body, k: string): string | undefined {
  if (b[k] === undefined) return undefined;
  if (typeof b[k] !== 'string' || (b[k] as string).length === 0) throw bad(k, 'a non-empty string');
  return b[k] as string;
}
function optOneOf<T extends string>(b: Body, k: string, values: readonly T[]): T | undefined {
  if (b[k] === undefined) return undefined;
  if (!values.includes(b[k] as T)) throw bad(k, `one of ${values.join(', ')}`);
  return b[k] as T;
}

/** Group and bot options: their problems are 400s naming the field. */
function options<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof OptionError) throw new HttpError(400, e.message);
    throw e;
  }
}

/**
 * ConsultError conditions → HTTP: unknown things are 404, a shop another sidecar decides 421 (ask that one's admin
 * API; GET /shops/<jid> says which), every other refusal a 409.
 */
function fromConsultError(e: ConsultError): HttpError {
  if (e instanceof NotOwner) return new HttpError(421, e.error.text);
  return new HttpError(e.error.condition === 'item-not-found' ? 404 : 409, e.error.text);
}

export function adminRoutes(deps: AdminDeps): [string, RegExp, Handler][] {
  const { store, directory, desk, presence } = deps;
  const now = deps.now ?? Date.now;

  // Every shop/agent change: refresh the in-memory view and tell the shims what to forward.
  const changed = async (drain: string[] = []) => {
    await directory.reload();
    desk.shops.refresh();
    await deps.ownership.round();
    deps.watch.publish();
    for (const shop of drain) await desk.drainQueue(shop);
  };
  const requireShop = (jid: string): Shop => {
    const shop = directory.shop(jid);
    if (!shop) throw new HttpError(404, `${jid} is not a shop`);
    return shop;
  };
  const agentView = async (jid: string) => {
    const agent = await store.getAgent(jid);
    const shops = directory.shopsOf(jid);
    if (!agent && shops.length === 0) throw new HttpError(404, `${jid} is not an agent`);
    return {
      jid,
      status: presence.status(jid),
      shops: shops.map((s) => ({
        shop: s.jid,
        maxSessions: directory.membership(s.jid, jid)!.maxSessions,
        sessions: desk.view.loadOf(s.jid, jid),
      })),
      resources: presence.resourcesOf(jid).map(({ resource, node, show, priority }) => ({ resource, node, show, priority })),
    };
  };
  const limitsOf = (b: Body, old: Limits | undefined): Limits => {
    const given = b.limits ?? {};
    if (typeof given !== 'object' || given === null || Array.isArray(given)) throw bad('limits', 'an object');
    const out = { ...(old ?? deps.defaultLimits) };
    for (const [k, v] of Object.entries(given)) {
      const range = LIMIT_RANGES[k as keyof Limits];
      if (!range) throw bad(`limits.${k}`, `one of ${Object.keys(LIMIT_RANGES).join(', ')}`);
      if (!Number.isInteger(v) || v < range[0] || v > range[1]) throw bad(`limits.${k}`, `an integer in ${range[0]}..${range[1]}`);
      out[k as keyof Limits] = v;
    }
    return out;
  };
  // Texts given replace the shop's own for those keys; null removes an override (back to the language default).
  const textsOf = (b: Body, old: Partial<Texts> | undefined): Partial<Texts> => {
    const given = b.texts ?? {};
    if (typeof given !== 'object' || given === null || Array.isArray(given)) throw bad('texts', 'an object');
    const out: Record<string, string> = { ...(old ?? {}) };
    for (const [k, v] of Object.entries(given)) {
      if (v === null) {
        delete out[k];
        continue;
      }
      const problem = textProblem(k, v);
      if (problem) throw new HttpError(400, `texts.${k} ${problem}`);
      out[k] = v as string;
    }
    return out as Partial<Texts>;
  };
  const shopView = (s: Shop) => ({
    ...s,
    agents: directory.membersOf(s.jid).map((m) => ({ jid: m.agent, maxSessions: m.maxSessions })),
    // Sessions and queue of a shop are read (and changed) through the sidecar that decides it.
    decidedHere: desk.shops.owns(s.jid),
  });
  /** A shop this sidecar decides: its sessions and queue are here. */
  const requireOwned = (jid: string): Shop => {
    const shop = requireShop(jid);
    if (!desk.shops.owns(shop.jid)) throw fromConsultError(new NotOwner(shop.jid));
    return shop;
  };

  const J = '([^/]+)';
  return [
    ['GET', /^\/shops$/, async () => directory.allShops().map(shopView)],
    ['GET', new RegExp(`^/shops/${J}$`), async ({ params }) => shopView(requireShop(jidParam(params[0], 'shop')))],
    [
      'PUT',
      new RegExp(`^/shops/${J}$`),
      async ({ params, body }) => {
        const jid = jidParam(params[0], 'shop');
        if (directory.isAgent(jid)) throw new HttpError(409, `${jid} is an agent; a shop JID cannot also be an agent`);
        const old = directory.shop(jid);
        const name = optStr(body, 'name') ?? old?.name;
        if (!name) throw bad('name', 'a non-empty string (required for a new shop)');
        const language = optOneOf(body, 'language', LANGUAGES) ?? old?.language ?? 'zh';
        const shop: Shop = {
          jid,
          name,
          welcome: optStr(body, 'welcome') ?? old?.welcome ?? name,
          noAgentText: optStr(body, 'noAgentText') ?? old?.noAgentText ?? DEFAULT_NO_AGENT_TEXT[language],
          strategy: optOneOf(body, 'strategy', STRATEGIES) ?? old?.strategy ?? 'least-busy',
          queueEnabled:
            body.queueEnabled === undefined
              ? (old?.queueEnabled ?? true)
              : typeof body.queueEnabled === 'boolean'
                ? body.queueEnabled
                : (() => {
                    throw bad('queueEnabled', 'true or false');
                  })(),
          limits: limitsOf(body, old?.limits),
          language,
          texts: textsOf(body, old?.texts),
          ...options(() => ({
            groups:
              body.groups === undefined
                ? (old?.groups ?? [])
                : parseGroups(body.groups, 'groups', new Set(directory.membersOf(jid).map((m) => m.agent))),
            // Bot fields given replace the shop's, the others are kept (e.g. a new mode, the same URL).
            bot:
              body.bot === undefined
                ? (old?.bot ?? parseBot(undefined))
                : parseBot(typeof body.bot === 'object' && body.bot !== null ? { ...old?.bot, ...body.bot } : body.bot),
          })),
        };
        await store.putShop(shop);
        await changed();
        return shopView(directory.shop(jid)!);
      },
    ],
    [
      'DELETE',
      new RegExp(`^/shops/${J}$`),
      async ({ params }) => {
        const shop = requireOwned(jidParam(params[0], 'shop'));
        // Open sessions or waiting visitors would be stranded: the admin closes them first.
        const { sessions, queue } = desk.view.counts(shop.jid);
        if (sessions || queue)
          throw new HttpError(409, `${shop.jid} has ${sessions} open sessions and ${queue} waiting visitors; close them first`);
        await store.deleteShop(shop.jid);
        await changed();
        await desk.shops.forget(shop.jid);
        return { deleted: shop.jid };
      },
    ],
    [
      'PUT',
      new RegExp(`^/shops/${J}/agents/${J}$`),
      async ({ params, body }) => {
        const shop = requireShop(jidParam(params[0], 'shop'));
        const agent = jidParam(params[1], 'agent');
        if (directory.shop(agent)) throw new HttpError(409, `${agent} is a shop; it cannot also be an agent`);
        const old = directory.membership(shop.jid, agent);
        const max = body.maxSessions ?? old?.maxSessions ?? 5;
        if (!Number.isInteger(max) || (max as number) < 1 || (max as number) > 1000) throw bad('maxSessions', 'an integer in 1..1000');
        await store.putMembership({ shop: shop.jid, agent, maxSessions: max as number, joinedAt: old?.joinedAt ?? now() });
        if (!(await store.getAgent(agent))) await store.putAgent({ jid: agent, status: 'standard' });
        await changed([shop.jid]);
        return agentView(agent);
      },
    ],
    [
      'DELETE',
      new RegExp(`^/shops/${J}/agents/${J}$`),
      async ({ params }) => {
        const shop = requireShop(jidParam(params[0], 'shop'));
        const agent = jidParam(params[1], 'agent');
        if (!directory.membership(shop.jid, agent)) throw new HttpError(404, `${agent} is not an agent of ${shop.jid}`);
        // Its open sessions are handed over by the offline timer, like those of an agent who left.
        await store.deleteMembership(shop.jid, agent);
        if (shop.groups.some((g) => g.agents.includes(agent)))
          await store.putShop({ ...shop, groups: shop.groups.map((g) => ({ ...g, agents: g.agents.filter((a) => a !== agent) })) });
        await changed();
        return { deleted: agent, shop: shop.jid };
      },
    ],
    ['GET', new RegExp(`^/agents/${J}$`), async ({ params }) => agentView(jidParam(params[0], 'agent'))],
    [
      'PUT',
      new RegExp(`^/agents/${J}/status$`),
      async ({ params, body }) => {
        const agent = jidParam(params[0], 'agent');
        const status = optOneOf(body, 'status', AGENT_STATUSES);
        if (!status) throw bad('status', `one of ${AGENT_STATUSES.join(', ')}`);
        await agentView(agent); // 404 for an unknown agent
        await desk.setAgentStatus(agent, status);
        return agentView(agent);
      },
    ],
    [
      'GET',
      /^\/sessions$/,
      async ({ query }) => {
        // All sessions: those of the shops decided here.
        const shop = query.has('shop') ? requireOwned(jidParam(query.get('shop'), 'shop')).jid : undefined;
        return desk.view.sessions(shop);
      },
    ],
    [
      'POST',
      /^\/sessions\/close$/,
      async ({ body }) => {
        const shop = jidParam(body.shop as string, 'shop');
        const visitor = jidParam(body.visitor as string, 'visitor');
        await desk.closeSession(shop, visitor, 'admin');
        return { closed: { shop, visitor } };
      },
    ],
    [
      'POST',
      /^\/sessions\/transfer$/,
      async ({ body }) => {
        const shop = jidParam(body.shop as string, 'shop');
        const visitor = jidParam(body.visitor as string, 'visitor');
        const reason = body.reason === undefined ? '' : optStr(body, 'reason')!;
        if (body.toGroup !== undefined && body.to === undefined) {
          const group = optStr(body, 'toGroup')!;
          await desk.transferToGroup(shop, visitor, group, reason);
          return { transferred: { shop, visitor, toGroup: group } };
        }
        const to = jidParam(body.to as string, 'to');
        await desk.transferSession(shop, visitor, to, reason);
        return { transferred: { shop, visitor, to } };
      },
    ],
    [
      'PUT',
      new RegExp(`^/shops/${J}/groups/${J}$`),
      async ({ params, body }) => {
        const shop = requireShop(jidParam(params[0], 'shop'));
        const group = options(() => parseGroup(body, 'group', params[1]));
        const groups = [...shop.groups.filter((g) => g.name !== group.name), group].map((g) =>
          group.isDefault && g !== group ? { ...g, isDefault: false } : g,
        );
        options(() => checkGroups(groups, 'groups', new Set(directory.membersOf(shop.jid).map((m) => m.agent))));
        await store.putShop({ ...shop, groups });
        await changed([shop.jid]);
        return shopView(directory.shop(shop.jid)!);
      },
    ],
    [
      'DELETE',
      new RegExp(`^/shops/${J}/groups/${J}$`),
      async ({ params }) => {
        const shop = requireShop(jidParam(params[0], 'shop'));
        if (!shop.groups.some((g) => g.name === params[1])) throw new HttpError(404, `${params[1]} is not a group of ${shop.jid}`);
        await store.putShop({ ...shop, groups: shop.groups.filter((g) => g.name !== params[1]) });
        await changed([shop.jid]);
        return { deleted: params[1], shop: shop.jid };
      },
    ],
    ...archiveRoutes(desk.archiver.store, requireShop),
    [
      'GET',
      /^\/queue$/,
      async ({ query }) => {
        const shop = requireOwned(jidParam(query.get('shop'), 'shop'));
        return desk.view.queue(shop.jid);
      },
    ],
  ];
}

const digest = (s: string) => createHash('sha256').update(s).digest();

async function readBody(req: IncomingMessage): Promise<Body> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 1 << 20) throw new HttpError(413, 'body larger than 1 MiB');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'body must be valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object');
  return body as Body;
}

/** The client's address as the socket gives it (an IPv4 client of a dual-stack socket without its ::ffff: prefix). */
const clientAddress = (req: IncomingMessage) => (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:(?=\d+\.)/, '');

export function adminHandler(deps: AdminDeps) {
  const routes = adminRoutes(deps);
  const want = digest(`Bearer ${deps.token}`);
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
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    try {
      if (req.method === 'GET' && url.pathname === '/metrics') {
        if (!deps.metrics) throw new HttpError(404, 'metrics are off');
        res.writeHead(200, { 'content-type': deps.metrics.registry.contentType });
        res.end(await deps.metrics.registry.metrics());
        return;
      }
      // An address that failed too often is not even checked (a right guess among them would say nothing either).
      const address = clientAddress(req);
      const wait = failures.blockedFor(address);
      if (wait > 0) {
        authLog.note(address);
        const sec = Math.ceil(wait / 1000);
        res.setHeader('retry-after', String(sec));
        throw new HttpError(429, `too many failed authentications from ${address}; try again in ${sec} s`);
      }
      // Compare digests so the check takes the same time whatever the guess.
      if (!timingSafeEqual(digest(req.headers.authorization ?? ''), want)) {
        failures.failed(address);
        authLog.note(address);
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'missing or wrong bearer token');
      }
      failures.succeeded(address);
      let pathMatched = false;
      for (const [method, re, handler] of routes) {
        const m = re.exec(url.pathname);
        if (!m) continue;
        pathMatched = true;
        if (method !== req.method) continue;
        let params: string[];
        try {
          params = m.slice(1).map(decodeURIComponent);
        } catch {
          throw new HttpError(400, 'path is not valid percent-encoding');
        }
        const body = req.method === 'GET' || req.method === 'DELETE' ? {} : await readBody(req);
        const out = await handler({ params, query: url.searchParams, body });
        if (!(out instanceof Raw)) return send(res, 200, out);
        res.writeHead(200, { 'content-type': out.type });
        res.end(out.body);
        return;
      }
      throw pathMatched
        ? new HttpError(405, `${req.method} not allowed on ${url.pathname}`)
        : new HttpError(404, `no route ${url.pathname}`);
    } catch (e) {
      const err = e instanceof ConsultError ? fromConsultError(e) : e;
      if (err instanceof HttpError) return send(res, err.status, { error: err.message });
      deps.log.error('admin request failed', { method: req.method, path: url.pathname, err: e });
      send(res, 500, { error: 'internal error' });
    }
  };
  /** close(): the failures counted since their last log line are told now. */
  return Object.assign(handle, { close: () => authLog.flush() });
}

export async function startAdminServer(
  deps: AdminDeps,
  host: string,
  port: number,
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const handler = adminHandler(deps);
  const server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        handler.close();
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive clients must not hold shutdown open
      }),
  };
}
