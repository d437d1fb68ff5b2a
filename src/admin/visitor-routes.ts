// Admin routes over one visitor across the shops: erasure (DELETE) and export (GET) of everything kept about it.
// Both are in the audit log (the export is an audited read); both need the admin role.
import { z } from 'zod';
import type { Desk } from '../desk/desk.js';
import { type Route, adminRoute } from './routes.js';
import { ArchiveRecordView, UserJid } from './schemas.js';

export const VisitorParams = z.object({ jid: UserJid });
export const ForgetQuery = z.strictObject({
  account: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true')
    .meta({ description: "true: ejabberd removes the visitor's account too (widget visitors, visitors.<domain>)" }),
});

const Erased = z.strictObject({ node: z.string(), offline: z.boolean(), mam: z.boolean(), account: z.boolean() });
export const ForgottenView = z.strictObject({
  visitor: z.string(),
  shops: z.array(z.string()).meta({ description: 'shops decided here whose live state held something of it (now erased)' }),
  heldElsewhere: z
    .array(z.string())
    .meta({ description: 'shops another sidecar decides: not erased here; send the same request to that sidecar' }),
  archived: z.int().meta({ description: 'archived sessions deleted' }),
  ejabberd: z.union([Erased, z.strictObject({ error: z.string() })]).meta({
    description: 'what ejabberd erased (offline: its offline messages; mam: its MAM archive; account), or why it could not',
  }),
  complete: z.boolean().meta({ description: 'false: repeat the request (it is idempotent) once heldElsewhere or ejabberd is fixed' }),
});

const Stored = z.strictObject({ at: z.number(), xml: z.string() });
const ShopHoldings = z.strictObject({
  shop: z.string(),
  session: z.looseObject({}).optional().meta({ description: 'its open session' }),
  queue: z.strictObject({ since: z.number(), group: z.string(), position: z.int() }).optional(),
  kept: z.array(Stored).meta({ description: 'its messages kept for an agent' }),
  history: z.array(Stored).meta({ description: 'the messages of its open session replayed on a transfer' }),
  transcript: z.looseObject({}).optional().meta({ description: 'the transcript of its open or waiting session' }),
  sticky: z.strictObject({ agent: z.string(), until: z.number() }).optional().meta({ description: 'its last agent, preferred until' }),
  ratingDue: z.strictObject({ id: z.string(), until: z.number() }).optional(),
  left: z.looseObject({}).optional().meta({ description: 'its left message' }),
  unarchived: z.array(z.looseObject({})).meta({ description: 'closed sessions not yet written to the archive' }),
  events: z.array(z.looseObject({})).meta({ description: 'its webhook events not yet delivered' }),
});
export const VisitorExportView = z.strictObject({
  visitor: z.string(),
  exportedAt: z.number(),
  shops: z.array(ShopHoldings).meta({ description: 'what the live state of each shop decided here holds of it' }),
  heldElsewhere: z.array(z.string()).meta({ description: 'shops another sidecar decides: ask that sidecar for their live state' }),
  archive: z.array(ArchiveRecordView).meta({ description: 'its archived sessions, newest first' }),
});

export function visitorRoutes(desk: Desk, now: () => number): Route[] {
  const visitorRoute = adminRoute('visitors');
  return [
    visitorRoute({
      method: 'DELETE',
      path: '/visitors/{jid}',
      operationId: 'forgetVisitor',
      summary: 'Erase a visitor: live state, archive, journal, and in ejabberd its offline messages, MAM archive (and account)',
      description:
        'Its open session is closed (the agent is told, the visitor is not), and every shop decided here is snapshotted so that no ' +
        'journal row before holds its messages. Idempotent: repeat it when `complete` is false. A shop, agent or supervisor JID: 409.',
      role: 'admin',
      params: VisitorParams,
      query: ForgetQuery,
      ok: { description: 'what was erased', json: ForgottenView },
      problems: [409],
      handle: async ({ params, query, audit }) => {
        const result = await desk.erasure.forget(params.jid, query.account);
        audit.after({ visitor: params.jid, shops: result.shops, archived: result.archived, complete: result.complete });
        return result;
      },
    }),
    visitorRoute({
      method: 'GET',
      path: '/visitors/{jid}/export',
      operationId: 'exportVisitor',
      summary: 'Everything kept about a visitor: live state of the shops decided here and its archived sessions',
      role: 'admin',
      audited: true,
      params: VisitorParams,
      ok: { description: 'the export', json: VisitorExportView },
      handle: async ({ params, audit }) => {
        const result = await desk.erasure.export(params.jid, now());
        audit.after({ visitor: params.jid, shops: result.shops.length, archived: result.archive.length });
        return result as unknown as z.input<typeof VisitorExportView>; // its state parts are typed in src/routing/state.ts
      },
    }),
  ];
}
