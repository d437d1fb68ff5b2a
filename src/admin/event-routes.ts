// The admin route over a shop's webhook events: where they go (never the secret) and what waits in its outbox, for a
// shop decided here (another sidecar's shop: 421, answered by http.ts).
import { z } from 'zod';
import type { Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import { eventId } from '../desk/event-sender.js';
import { DECIDED_HERE_PROBLEMS, type Route, adminRoute } from './routes.js';
import { shopLookup } from './shop-lookup.js';
import { UserJid } from './schemas.js';

/** Undelivered events listed at most (the oldest: the ones the receiver is waiting for). */
const LISTED = 100;

export const EventsQuery = z.strictObject({ shop: UserJid });
export const PendingEventView = z.strictObject({
  id: z.string().meta({ description: 'the idempotency key (X-Consult-Event-Id)' }),
  seq: z.int(),
  type: z.string(),
  at: z.number().meta({ description: 'when it happened (ms since the epoch)' }),
  visitor: z.string(),
  session: z.string().meta({ description: "the session's archive id" }),
});
export const EventsView = z.strictObject({
  shop: z.string(),
  url: z.string().nullable().meta({ description: 'where the shop’s events go (null: nowhere; they wait); the secret is never shown' }),
  messages: z.boolean().meta({ description: 'every message too' }),
  pending: z.int().meta({ description: 'events not yet delivered' }),
  max: z.int().meta({ description: 'limits.outboxMax: past it the oldest are dropped' }),
  lastSeq: z.int().meta({ description: 'the number of the last event made' }),
  oldest: z.array(PendingEventView).meta({ description: `the oldest undelivered events, at most ${LISTED}, in delivery order` }),
});

export function eventRoutes(desk: Desk, directory: Directory): Route[] {
  const { requireOwned } = shopLookup(directory, desk);
  return [
    adminRoute('sessions')({
      method: 'GET',
      path: '/events',
      operationId: 'getEvents',
      summary: 'A shop’s webhook events: where they go and what waits to be delivered',
      description: 'Delivered after commit, in order, at least once (docs/behaviour.md, "Events out"); the counters are on /metrics.',
      query: EventsQuery,
      ok: { description: 'the shop’s outbox', json: EventsView },
      problems: DECIDED_HERE_PROBLEMS,
      handle: async ({ query }) => {
        const shop = requireOwned(query.shop).jid;
        const st = desk.shops.state(shop);
        const hook = desk.sender.hookOf(shop);
        const oldest: z.infer<typeof PendingEventView>[] = [];
        for (const [seq, e] of st?.outbox ?? []) {
          if (oldest.length === LISTED) break;
          oldest.push({ id: eventId(shop, seq), seq, type: e.type, at: e.at, visitor: e.visitor, session: e.session });
        }
        return {
          shop,
          url: hook?.url ?? null,
          messages: hook?.messages ?? false,
          pending: st?.outbox.size ?? 0,
          max: st?.limits.outboxMax ?? 0,
          lastSeq: st?.eventSeq ?? 0,
          oldest,
        };
      },
    }),
  ];
}
