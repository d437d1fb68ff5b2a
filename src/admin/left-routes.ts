// Admin routes over left messages (kept outside opening hours or out of the queue) and abandoned waits, of the shops
// decided here (another sidecar's shop: 421, answered by http.ts).
import { z } from 'zod';
import type { Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import { LEFT_REASONS } from '../routing/state.js';
import { DECIDED_HERE_PROBLEMS, type Route, adminRoute } from './routes.js';
import { shopLookup } from './shop-lookup.js';
import { UserJid } from './schemas.js';

const reasons = LEFT_REASONS as unknown as readonly [string, ...string[]];
const ms = (description: string) => z.number().meta({ description: `${description} (ms since the epoch)` });

export const LeftQuery = z.strictObject({ shop: UserJid });
export const LeftCloseBody = z.strictObject({ shop: UserJid, visitor: UserJid });

export const LeftView = z.strictObject({
  visitor: z.string(),
  shop: z.string(),
  leftAt: ms('left: left messages are handed out oldest first'),
  reason: z
    .enum(reasons)
    .meta({ description: 'closed: outside opening hours; timeout: past queueMaxWaitSec; left: the visitor left the queue' }),
  group: z.string().meta({ description: 'the groups it is for; "": any agent' }),
  waitedMs: z.number().optional().meta({ description: 'it came from the queue after waiting this long' }),
  messages: z.array(z.strictObject({ at: z.number(), text: z.string() })).meta({ description: 'the kept messages, in order' }),
});
export const LeftClosed = z.strictObject({ closed: z.strictObject({ shop: z.string(), visitor: z.string() }) });
export const AbandonedView = z.strictObject({
  shop: z.string(),
  group: z.string().meta({ description: 'the group key it waited for; "": any agent' }),
  reason: z.enum(reasons),
  count: z.int(),
  avgWaitMs: z.number().meta({ description: 'the average time those visitors had waited in the queue' }),
});

export function leftRoutes(desk: Desk, directory: Directory): Route[] {
  const { requireOwned } = shopLookup(directory, desk);
  const sessionRoute = adminRoute('sessions');
  return [
    sessionRoute({
      method: 'GET',
      path: '/left-messages',
      operationId: 'listLeftMessages',
      summary: 'Left messages of a shop decided here, oldest first',
      description: 'Handed out to agents when the shop is open, one per agent per timer tick, after the queue.',
      query: LeftQuery,
      ok: { description: 'the left messages', json: z.array(LeftView) },
      problems: DECIDED_HERE_PROBLEMS,
      handle: async ({ query }) => desk.view.left(requireOwned(query.shop).jid),
    }),
    sessionRoute({
      method: 'POST',
      path: '/left-messages/close',
      operationId: 'closeLeftMessage',
      summary: 'Close a left message: its kept messages are dropped (nobody is told)',
      body: LeftCloseBody,
      role: 'operator',
      ok: { description: 'closed', json: LeftClosed },
      problems: DECIDED_HERE_PROBLEMS,
      handle: async ({ body }) => {
        await desk.closeLeftMessage(requireOwned(body.shop).jid, body.visitor);
        return { closed: { shop: body.shop, visitor: body.visitor } };
      },
    }),
    sessionRoute({
      method: 'GET',
      path: '/queue/abandoned',
      operationId: 'getAbandoned',
      summary: 'Waits that ended without an agent, per group and reason, of a shop decided here',
      description: 'Counted in the shop’s journaled state, so a restart keeps them; the live counters are on /metrics.',
      query: LeftQuery,
      ok: { description: 'the abandoned waits', json: z.array(AbandonedView) },
      problems: DECIDED_HERE_PROBLEMS,
      handle: async ({ query }) => desk.view.abandoned(requireOwned(query.shop).jid),
    }),
  ];
}
