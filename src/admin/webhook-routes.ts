// Admin routes over a shop's own webhook (events out), kept in the store over the config's events: GET, PUT and
// DELETE /shops/{shop}/events. The secret is write-only: answers and the audit log say only that one is set.
// Effective at once on every sidecar deciding the shop (the directory is re-read; the sender reads it on every use).
import type { z } from 'zod';
import type { EventHook } from '../domain/config.js';
import type { Shop, ShopWebhook } from '../domain/shop.js';
import type { Directory } from '../desk/directory.js';
import type { Store } from '../desk/ports.js';
import { HttpError, badField } from './problem.js';
import { type Route, adminRoute } from './routes.js';
import { Deleted, ShopEventsPutBody, ShopEventsView, ShopParams } from './schemas.js';

export interface WebhookRouteDeps {
  store: Store;
  directory: Directory;
  requireShop(jid: string): Shop;
  /** The shop's webhook now, all sources considered (the event sender's). */
  hookOf(shop: string): EventHook | undefined;
  /** After a shop changed: the directory, the desk and the shims learn it. */
  changed(): Promise<void>;
}

/** A stored webhook as answered: everything but the secret. */
export function webhookOut(h: ShopWebhook | false): Exclude<z.input<typeof ShopEventsView>['own'], null> {
  if (h === false) return false;
  return {
    url: h.url,
    ...(h.messages !== undefined ? { messages: h.messages } : {}),
    ...(h.timeoutMs !== undefined ? { timeoutMs: h.timeoutMs } : {}),
    secretSet: true,
  };
}

export function webhookRoutes(deps: WebhookRouteDeps): Route[] {
  const route = adminRoute('shops');
  const view = (jid: string): z.input<typeof ShopEventsView> => {
    const own = deps.directory.shop(jid)?.events;
    const hook = deps.hookOf(jid);
    return {
      shop: jid,
      source: own !== undefined ? (own ? 'shop' : 'none') : hook ? 'config' : 'none',
      own: own === undefined ? null : webhookOut(own),
      url: hook?.url ?? null,
      messages: hook?.messages ?? false,
      timeoutMs: hook?.timeoutMs ?? null,
      secretSet: Boolean(hook?.secret),
    };
  };
  const store = async (shop: Shop, events: ShopWebhook | false | undefined) => {
    const { events: _old, ...rest } = shop;
    await deps.store.putShop(events === undefined ? rest : { ...rest, events });
    await deps.changed();
  };
  return [
    route({
      method: 'GET',
      path: '/shops/{shop}/events',
      operationId: 'getShopWebhook',
      summary: 'Where a shop’s webhook events go: its own setting and the one in effect (never the secret)',
      params: ShopParams,
      ok: { description: 'the webhook', json: ShopEventsView },
      problems: [404],
      handle: async ({ params }) => view(deps.requireShop(params.shop).jid),
    }),
    route({
      method: 'PUT',
      path: '/shops/{shop}/events',
      operationId: 'putShopWebhook',
      summary: 'Set a shop’s own webhook (over the config’s), or turn its events off',
      description:
        'The secret is write-only: left out, the one the shop has stays (400 when it has none). {"off": true}: no events for ' +
        'the shop. Effective without a restart; events already made wait in the outbox for the new endpoint.',
      params: ShopParams,
      body: ShopEventsPutBody,
      ok: { description: 'the webhook now', json: ShopEventsView },
      problems: [404],
      handle: async ({ params, body, audit }) => {
        const shop = deps.requireShop(params.shop);
        audit.before(view(shop.jid));
        if (body.off) {
          await store(shop, false);
          return view(shop.jid);
        }
        const secret = body.secret ?? (shop.events ? shop.events.secret : undefined);
        if (!secret) throw badField('body', 'secret', 'must be given: the shop has no webhook secret yet');
        const events: ShopWebhook = {
          url: body.url!,
          secret,
          ...(body.messages !== undefined ? { messages: body.messages } : {}),
          ...(body.timeoutMs !== undefined ? { timeoutMs: body.timeoutMs } : {}),
        };
        await store(shop, events);
        return view(shop.jid);
      },
    }),
    route({
      method: 'DELETE',
      path: '/shops/{shop}/events',
      operationId: 'deleteShopWebhook',
      summary: 'Remove a shop’s own webhook setting: the config’s events apply again',
      params: ShopParams,
      ok: { description: 'removed', json: Deleted },
      problems: [404],
      handle: async ({ params, audit }) => {
        const shop = deps.requireShop(params.shop);
        if (shop.events === undefined) throw new HttpError(404, `${shop.jid} has no webhook of its own`);
        audit.before(view(shop.jid));
        await store(shop, undefined);
        audit.after(view(shop.jid));
        return { deleted: 'events', shop: shop.jid };
      },
    }),
  ];
}
