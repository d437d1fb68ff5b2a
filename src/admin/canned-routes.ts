// Admin routes over canned replies (src/domain/canned.ts), one at a time: the shop's, or a group's with ?group=.
// The whole set also travels in the shop's (and the group's) PUT and PATCH bodies as `canned` (role admin). One reply
// at a time is the day's work of a team lead: role operator; the audit log has the reply before and after.
import { CANNED_MAX, type Canned } from '../domain/canned.js';
import type { Shop } from '../domain/shop.js';
import type { Directory } from '../desk/directory.js';
import type { Store } from '../desk/ports.js';
import { HttpError, PROBLEM_TYPES } from './problem.js';
import { type AuditNote, type Route, adminRoute } from './routes.js';
import { CannedParams, CannedPutBody, CannedQuery, CannedView, Deleted, ShopParams } from './schemas.js';
import type { z } from 'zod';

export interface CannedRouteDeps {
  store: Store;
  directory: Directory;
  requireShop(jid: string): Shop;
  /** After a shop changed: the directory, the desk and the shims learn it. */
  changed(): Promise<void>;
}

/** The replies of the shop, or of one of its groups (404 when it has no such group). */
function cannedOf(shop: Shop, group: string | undefined): Canned {
  if (group === undefined) return shop.canned ?? {};
  const g = shop.groups.find((x) => x.name === group);
  if (!g) throw new HttpError(404, `${group} is not a group of ${shop.jid}`);
  return g.canned ?? {};
}

/** The shop with the replies of itself or of a group replaced (an empty set: none, the field absent). */
function withCanned(shop: Shop, group: string | undefined, canned: Canned): Shop {
  const set = <T extends { canned?: Canned }>(o: T): T => {
    const { canned: _old, ...rest } = o;
    return (Object.keys(canned).length ? { ...rest, canned } : rest) as T;
  };
  return group === undefined ? set(shop) : { ...shop, groups: shop.groups.map((g) => (g.name === group ? set(g) : g)) };
}

function view(shop: Shop, group: string | undefined): z.input<typeof CannedView> {
  const replies = Object.entries(cannedOf(shop, group))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, text]) => ({ name, text }));
  return { shop: shop.jid, ...(group === undefined ? {} : { group }), replies };
}

export function cannedRoutes(deps: CannedRouteDeps): Route[] {
  const shopRoute = adminRoute('shops');
  const put = async (shop: Shop, group: string | undefined, canned: Canned) => {
    await deps.store.putShop(withCanned(shop, group, canned));
    await deps.changed();
    return view(deps.directory.shop(shop.jid)!, group);
  };
  /** The one reply as the audit log shows it (null: none of that name). */
  const replyView = (shop: Shop, group: string | undefined, name: string) => {
    const text = cannedOf(shop, group)[name];
    return text === undefined ? null : { shop: shop.jid, ...(group === undefined ? {} : { group }), name, text };
  };
  const audited = (audit: AuditNote, shop: Shop, group: string | undefined, name: string) => {
    audit.before(replyView(shop, group, name));
    return () => audit.after(replyView(deps.directory.shop(shop.jid)!, group, name));
  };
  return [
    shopRoute({
      method: 'GET',
      path: '/shops/{shop}/canned',
      operationId: 'listCanned',
      summary: 'The canned replies of a shop, or of one of its groups',
      params: ShopParams,
      query: CannedQuery,
      ok: { description: 'the replies, by name', json: CannedView },
      problems: [404],
      handle: async ({ params, query }) => view(deps.requireShop(params.shop), query.group),
    }),
    shopRoute({
      method: 'PUT',
      path: '/shops/{shop}/canned/{name}',
      operationId: 'putCanned',
      summary: 'Create or replace one canned reply',
      description: `An agent sends it with #name or /reply name. At most ${CANNED_MAX} per shop and per group (409 past that).`,
      params: CannedParams,
      query: CannedQuery,
      body: CannedPutBody,
      ok: { description: 'the replies now', json: CannedView },
      role: 'operator',
      problems: [404, 409],
      handle: async ({ params, query, body, audit }) => {
        const shop = deps.requireShop(params.shop);
        const now = cannedOf(shop, query.group);
        const done = audited(audit, shop, query.group, params.name);
        if (!(params.name in now) && Object.keys(now).length >= CANNED_MAX)
          throw new HttpError(409, `${shop.jid} has ${CANNED_MAX} canned replies already; remove one first`, PROBLEM_TYPES.refused);
        const answer = await put(shop, query.group, { ...now, [params.name]: body.text });
        done();
        return answer;
      },
    }),
    shopRoute({
      method: 'DELETE',
      path: '/shops/{shop}/canned/{name}',
      operationId: 'deleteCanned',
      summary: 'Remove one canned reply',
      params: CannedParams,
      query: CannedQuery,
      ok: { description: 'removed', json: Deleted },
      role: 'operator',
      problems: [404],
      handle: async ({ params, query, audit }) => {
        const shop = deps.requireShop(params.shop);
        const now = cannedOf(shop, query.group);
        if (!(params.name in now)) throw new HttpError(404, `${shop.jid} has no canned reply ${params.name}`);
        const done = audited(audit, shop, query.group, params.name);
        const { [params.name]: _gone, ...rest } = now;
        await put(shop, query.group, rest);
        done();
        return { deleted: params.name, shop: shop.jid };
      },
    }),
  ];
}
