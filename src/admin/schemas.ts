// The admin API's schemas: what its paths, queries and bodies accept (validated with these, documented from these)
// and what it answers. Shop, agent, group and bot bodies are built from the config's schemas
// (src/domain/config-schema.ts), so the config file and the API accept the same values.
import { z } from 'zod';
import {
  AgentSchema,
  BareJidSchema,
  BotSchema,
  GroupSchema,
  HoursSchema,
  ShopLimitsSchema,
  ShopSchema,
  ShopWebhookFields,
  TextsSchema,
} from '../domain/config-schema.js';
import { WEEKDAYS } from '../domain/hours.js';
import { TAG_LABEL, TAG_LABEL_RULE } from '../domain/archive.js';
import { CANNED_NAME, CANNED_NAME_RULE, cannedTextProblem } from '../domain/canned.js';
import { ALL_AGENT_STATUSES, BOT_MODES, LIMIT_RANGES, STRATEGIES, type Limits } from '../domain/shop.js';
import { LANGUAGES, TEXT_VALUES, type TextKey } from '../domain/texts.js';

// ---- pieces --------------------------------------------------------------------
/** A user's bare JID (user@domain), lower-cased as bareJid() writes it. */
export const UserJid = BareJidSchema.refine((s) => s.includes('@'), { error: 'must be a bare JID (user@domain)' }).meta({
  description: 'a bare JID: user@domain',
});

/** A schema without its default: what a merge (PATCH) leaves out stays as it was. */
function withoutDefault(s: z.ZodType): z.ZodType {
  let inner = s;
  while (inner instanceof z.ZodDefault || inner instanceof z.ZodPrefault) inner = inner.unwrap() as z.ZodType;
  return s.description && inner !== s ? inner.describe(s.description) : inner;
}
const optionalOf = (s: z.ZodType) => withoutDefault(s).optional();

const ms = (description: string) => z.number().meta({ description: `${description} (ms since the epoch)` });
const strategies = STRATEGIES as unknown as readonly [string, ...string[]];
const botModes = BOT_MODES as unknown as readonly [string, ...string[]];
const statuses = ALL_AGENT_STATUSES as unknown as readonly [string, ...string[]];

// ---- path parameters -----------------------------------------------------------
export const ShopParams = z.object({ shop: UserJid });
export const AgentParams = z.object({ agent: UserJid });
export const MembershipParams = z.object({ shop: UserJid, agent: UserJid });
export const GroupParams = z.object({ shop: UserJid, group: GroupSchema.shape.name });
export const ArchiveIdParams = z.object({ id: z.string().min(1).max(200).meta({ description: 'an archived session’s id' }) });

// ---- bodies --------------------------------------------------------------------
// The config's shop without what the API keeps elsewhere: the JID is the path, agents are memberships.
const { jid: _jid, agents: _agents, ...shopFields } = ShopSchema.shape;

/** PUT /shops/{shop}: the whole shop; what it leaves out takes its default (the config's defaults). */
export const ShopPutBody = z.strictObject(shopFields).meta({ description: 'a whole shop: fields left out take their defaults' });

const textKeys = Object.keys(TEXT_VALUES) as TextKey[];
/** PATCH /shops/{shop}: only the fields given change (RFC 7396 merge: a text set to null goes back to its default). */
export const ShopPatchBody = z
  .strictObject({
    ...(Object.fromEntries(Object.entries(shopFields).map(([k, s]) => [k, optionalOf(s)])) as {
      [K in keyof typeof shopFields]: z.ZodOptional<z.ZodType<z.output<(typeof shopFields)[K]>, z.input<(typeof shopFields)[K]>>>;
    }),
    limits: ShopLimitsSchema.optional().meta({ description: 'the limits given change, the others stay' }),
    texts: z
      .strictObject(
        Object.fromEntries(textKeys.map((k) => [k, TextsSchema.shape[k].nullable().optional()])) as unknown as Record<
          TextKey,
          z.ZodOptional<z.ZodNullable<z.ZodType<string>>>
        >,
        { error: (iss) => (iss.code === 'unrecognized_keys' ? `is not a text; use one of ${textKeys.join(', ')}` : undefined) },
      )
      .optional()
      .meta({ description: 'texts given replace the shop’s own; null removes an override (back to the language’s default)' }),
    bot: z
      .strictObject({
        ...Object.fromEntries(Object.entries(BotSchema.shape).map(([k, s]) => [k, optionalOf(s)])),
        url: withoutDefault(BotSchema.shape.url).nullable().meta({ description: 'null removes the URL' }),
      })
      .optional()
      .meta({ description: 'bot fields given replace the shop’s, the others stay (e.g. a new mode, the same URL)' }),
    hours: HoursSchema.nullable().optional().meta({ description: 'the whole opening hours; null removes them (always open)' }),
  })
  .meta({ description: 'the fields to change; a shop that does not exist yet is created (then name is required)' });
export type ShopPatch = z.output<typeof ShopPatchBody>;

/** The bot a merge leads to is checked as a whole (a mode that needs a URL, the URL kept from before). */
export const WholeBot = BotSchema;

export const MembershipPutBody = z.strictObject({ maxSessions: AgentSchema.shape.maxSessions });
export const MembershipPatchBody = z.strictObject({ maxSessions: optionalOf(AgentSchema.shape.maxSessions) });
export const StatusBody = z.strictObject({ status: withoutDefault(AgentSchema.shape.status) });

const { name: _name, ...groupFields } = GroupSchema.shape;
/** PUT /shops/{shop}/groups/{group}: the whole group (its name is the path). */
export const GroupPutBody = z.strictObject(groupFields);

// Canned replies (src/domain/canned.ts): one at a time, the shop's or a group's (?group=).
const cannedName = z
  .string()
  .regex(CANNED_NAME, { error: `must be a canned reply name: ${CANNED_NAME_RULE}` })
  .meta({ description: `${CANNED_NAME_RULE}; an agent sends #name` });
export const CannedParams = z.object({ shop: UserJid, name: cannedName });
export const CannedQuery = z.strictObject({
  group: GroupSchema.shape.name.optional().meta({ description: 'a group’s replies (over the shop’s in its sessions); absent: the shop’s' }),
});
export const CannedPutBody = z.strictObject({
  text: z
    .string()
    .superRefine((t, ctx) => {
      const problem = cannedTextProblem(t);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .meta({ description: 'the text the visitor receives; {visitor}, {agent} and {shop} are filled in' }),
});
export const CannedView = z.strictObject({
  shop: z.string(),
  group: z.string().optional(),
  replies: z.array(z.strictObject({ name: z.string(), text: z.string() })).meta({ description: 'by name' }),
});

/** PUT /shops/{shop}/events: the shop's own webhook, or off: none for it. */
export const ShopEventsPutBody = z
  .strictObject({
    ...ShopWebhookFields,
    off: z.literal(true).optional().meta({ description: 'no events for this shop, whatever the config says (alone)' }),
  })
  .superRefine((b, ctx) => {
    if (b.off && Object.keys(b).length > 1) ctx.addIssue({ code: 'custom', path: ['off'], message: 'must be alone' });
    if (!b.off && !b.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'must be given (or off: true)' });
  })
  .meta({ description: 'the shop’s own webhook over the config’s events' });
/** A webhook as answered: never its secret, only that one is set. */
const WebhookOut = z.strictObject({
  url: z.string(),
  messages: z.boolean().optional(),
  timeoutMs: z.int().optional(),
  secretSet: z.literal(true).meta({ description: 'the secret is write-only: never answered nor logged' }),
});
export const ShopEventsView = z.strictObject({
  shop: z.string(),
  source: z.enum(['shop', 'config', 'none']).meta({
    description: 'shop: its own, set here; config: the config file’s (events.shops or events.url); none: no events',
  }),
  own: z
    .union([WebhookOut, z.literal(false)])
    .nullable()
    .meta({ description: 'its own setting (false: off; null: none, the config applies)' }),
  url: z.string().nullable().meta({ description: 'where its events go now (null: nowhere)' }),
  messages: z.boolean(),
  timeoutMs: z.int().nullable(),
  secretSet: z.boolean(),
});

export const CloseBody = z.strictObject({ shop: UserJid, visitor: UserJid });
export const TransferBody = z
  .strictObject({
    shop: UserJid,
    visitor: UserJid,
    to: UserJid.optional().meta({ description: 'the agent to hand the session to' }),
    toGroup: GroupSchema.shape.name.optional().meta({ description: 'or a group: the agent its strategy picks' }),
    reason: z.string().max(2000).optional(),
  })
  .superRefine((b, ctx) => {
    if (b.to === undefined && b.toGroup === undefined) ctx.addIssue({ code: 'custom', path: ['to'], message: 'is required (or toGroup)' });
    if (b.to !== undefined && b.toGroup !== undefined)
      ctx.addIssue({ code: 'custom', path: ['toGroup'], message: 'must not be given with to' });
  })
  .meta({ description: 'one of to and toGroup' });

// ---- queries -------------------------------------------------------------------
/** ms since the epoch, or an ISO 8601 date. */
export const Time = z
  .string()
  .refine((v) => Number.isFinite(/^\d+$/.test(v) ? Number(v) : Date.parse(v)), { error: 'must be ms since the epoch or an ISO 8601 date' })
  .transform((v) => (/^\d+$/.test(v) ? Number(v) : Date.parse(v)))
  .meta({ description: 'ms since the epoch, or an ISO 8601 date', examples: ['1700000000000', '2024-05-01T00:00:00Z'] });

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 100;

export const SessionsQuery = z.strictObject({ shop: UserJid.optional() });
export const QueueQuery = z.strictObject({ shop: UserJid });
export const StatsQuery = z.strictObject({
  shop: UserJid.optional(),
  from: Time.optional().meta({ description: 'sessions that ended at or after' }),
  to: Time.optional().meta({ description: 'and started at or before' }),
  tag: z
    .string()
    .transform((t) => t.toLowerCase())
    .pipe(z.string().regex(TAG_LABEL, { error: `must be a tag: ${TAG_LABEL_RULE}` }))
    .optional()
    .meta({ description: 'sessions an agent tagged with it (/tag)' }),
});
export const ArchiveQuery = z.strictObject({
  ...StatsQuery.shape,
  context: z
    .string()
    .min(1)
    .max(256)
    .optional()
    .meta({ description: 'sessions whose visitor context has this text in a name or value (case-insensitive)' }),
  visitor: UserJid.optional(),
  agent: UserJid.optional().meta({ description: 'anyone who served the session' }),
  limit: z.coerce
    .number()
    .int({ error: `must be an integer in 1..${MAX_PAGE}` })
    .min(1, { error: `must be an integer in 1..${MAX_PAGE}` })
    .max(MAX_PAGE, { error: `must be an integer in 1..${MAX_PAGE}` })
    .default(DEFAULT_PAGE)
    .meta({ description: `sessions on this page (default ${DEFAULT_PAGE})` }),
  cursor: z.string().min(1).max(500).optional().meta({ description: 'where the page starts: the `next` of the page before (opaque)' }),
  format: z.enum(['json', 'csv']).default('json').meta({ description: 'csv: one row per transcript line' }),
});

// ---- answers -------------------------------------------------------------------
const limitsOut = z.strictObject(Object.fromEntries(Object.keys(LIMIT_RANGES).map((k) => [k, z.int()])) as Record<keyof Limits, z.ZodInt>);
const GroupOut = z.strictObject({
  name: z.string(),
  isDefault: z.boolean(),
  agents: z.array(z.string()),
  products: z.array(z.string()),
  strategy: z.enum(strategies).optional(),
  maxSessions: z.int().optional(),
  bot: z.enum(botModes).optional(),
  answerTimeoutSec: z.int().optional(),
  hours: z.lazy(() => HoursOut).optional(),
  queueMaxWaitSec: z.int().optional(),
  canned: z.record(z.string(), z.string()).optional(),
});
/** Opening hours as stored (src/domain/hours.ts). */
const HoursOut = z.strictObject({
  timeZone: z.string(),
  weekly: z.partialRecord(z.enum(WEEKDAYS), z.array(z.tuple([z.string(), z.string()]))),
  exceptions: z.array(z.strictObject({ date: z.string(), hours: z.array(z.tuple([z.string(), z.string()])), note: z.string().optional() })),
});
const BotOut = z.strictObject({ mode: z.enum(botModes), url: z.string().optional(), timeoutMs: z.int(), retries: z.int() });

export const ShopView = z.strictObject({
  jid: z.string(),
  name: z.string(),
  welcome: z.string(),
  noAgentText: z.string(),
  strategy: z.enum(strategies),
  queueEnabled: z.boolean(),
  limits: limitsOut,
  language: z.enum(LANGUAGES),
  texts: z.partialRecord(z.enum(textKeys as [TextKey, ...TextKey[]]), z.string()).meta({ description: 'the shop’s own texts' }),
  groups: z.array(GroupOut),
  bot: BotOut,
  answerTimeoutSec: z
    .int()
    .optional()
    .meta({ description: 'answer or move on: seconds an assigned agent has to answer; absent or 0: off' }),
  maxMissedChats: z.int().optional().meta({ description: 'missed chats in a row that set an agent away; absent or 0: never' }),
  hours: HoursOut.optional().meta({ description: 'opening hours; absent: always open' }),
  queueMaxWaitSec: z.int().optional().meta({ description: 'the longest wait in the queue before a left message; absent or 0: no limit' }),
  supervisors: z.array(z.string()).optional().meta({ description: 'who may list, monitor, whisper to and take over its sessions' }),
  canned: z.record(z.string(), z.string()).optional().meta({ description: 'canned replies by name (#name from an agent)' }),
  events: z
    .union([WebhookOut, z.literal(false)])
    .optional()
    .meta({ description: 'its own webhook (PUT /shops/{shop}/events; false: off); absent: the config’s' }),
  agents: z.array(z.strictObject({ jid: z.string(), maxSessions: z.int() })),
  decidedHere: z.boolean().meta({ description: 'this sidecar decides the shop: its sessions and queue are read and changed here' }),
});

export const AgentView = z.strictObject({
  jid: z.string(),
  status: z.enum(statuses).meta({ description: 'away: set by the server after missed chats, until the agent (or an admin) sets another' }),
  shops: z.array(
    z.strictObject({
      shop: z.string(),
      maxSessions: z.int(),
      sessions: z.int().meta({ description: 'open here now' }),
      missedChats: z.int().optional().meta({ description: 'chats that moved on unanswered (given when this sidecar decides the shop)' }),
      missedInRow: z.int().optional().meta({ description: 'of those, since its last answer in time' }),
    }),
  ),
  resources: z.array(z.strictObject({ resource: z.string(), node: z.string(), show: z.string(), priority: z.int() })),
});

export const SessionView = z.strictObject({
  visitor: z.string(),
  shop: z.string(),
  agent: z.string(),
  startedAt: ms('opened'),
  lastVisitorAt: ms('the visitor’s last message; 0: none'),
  lastAgentAt: ms('the agent’s last message; 0: none'),
  remindedAt: ms('the agent last reminded of an unanswered visitor; 0: not yet'),
  orphanedAt: ms('the agent went offline with it open; 0: online'),
  group: z.string().optional().meta({ description: 'the groups it was routed to, comma-joined' }),
  arrivedAt: z.number().optional().meta({ description: 'joined the queue before being served' }),
  answerClockAt: z
    .number()
    .optional()
    .meta({ description: 'the agent’s answer clock started (it has not answered since); absent: none runs' }),
  silentMoves: z.int().optional().meta({ description: 'times it moved on because its agent did not answer in time' }),
  context: z.lazy(() => ContextOut).optional(),
});

export const WaitingView = z.strictObject({
  visitor: z.string(),
  shop: z.string(),
  enqueuedAt: ms('joined the queue'),
  kept: z.int().meta({ description: 'messages kept for the agent who takes it' }),
  group: z.string().meta({ description: 'the groups it waits for; "": any agent' }),
});

/** A visitor's context (src/domain/context.ts): what its client said about the visitor. */
const ContextOut = z
  .strictObject({
    name: z.string().optional(),
    email: z.string().optional(),
    phone: z.string().optional(),
    page: z.string().optional(),
    order: z.string().optional(),
    fields: z.record(z.string(), z.string()).optional(),
  })
  .meta({ description: 'what the visitor’s client said about the visitor; absent: nothing' });

const LineOut = z.strictObject({
  at: z.number(),
  role: z
    .enum(['visitor', 'agent', 'bot', 'system', 'whisper', 'note'])
    .describe('whisper: a supervisor to the agent; note: an agent’s /note; neither is ever seen by the visitor'),
  who: z.string(),
  text: z.string(),
  id: z.string().optional().meta({ description: 'the message’s body id' }),
  msgType: z.string().optional().meta({ description: 'QChat’s msgType when not text (1): photo 3, file 5, product card 11…' }),
  urls: z.array(z.string()).optional().meta({ description: 'the URLs of a photo, file, voice, video or product card' }),
  revoked: z.literal(true).optional().meta({ description: 'its sender took it back (a QChat revoke)' }),
});
const TransferOut = z.strictObject({ at: z.number(), from: z.string(), to: z.string(), reason: z.string() });
export const ArchiveRecordView = z.strictObject({
  id: z.string(),
  shop: z.string(),
  visitor: z.string(),
  agent: z.string().meta({ description: 'who the session ended with' }),
  agents: z.array(z.string()).meta({ description: 'everyone who served it, in order' }),
  group: z.string(),
  startedAt: z.number(),
  endedAt: z.number(),
  queueWaitMs: z.number(),
  firstResponseMs: z.number().nullable(),
  closeReason: z.enum(['agent', 'admin', 'idle']),
  transfers: z.array(TransferOut),
  lines: z.array(LineOut),
  omitted: z.int().meta({ description: 'oldest lines dropped past the shop’s transcriptPerSession' }),
  tags: z.array(z.string()).optional().meta({ description: 'the agent’s /tag labels ([] when none)' }),
  rating: z.int().optional(),
  ratedAt: z.number().optional(),
  context: z.lazy(() => ContextOut).optional(),
});
export const ArchivePage = z.strictObject({
  items: z.array(ArchiveRecordView).meta({ description: 'newest first (by end, then id)' }),
  next: z.string().nullable().meta({ description: 'the cursor of the next page; null: this is the last' }),
});
export const StatsView = z.array(
  z.strictObject({
    shop: z.string(),
    agent: z.string().nullable().meta({ description: 'null: the whole shop' }),
    sessions: z.int(),
    rated: z.int(),
    csat: z.number().nullable().meta({ description: 'share of ratings of 4 or 5' }),
    avgRating: z.number().nullable(),
    avgFirstResponseMs: z.number().nullable(),
    avgHandleMs: z.number(),
    avgQueueWaitMs: z.number(),
  }),
);

export const Deleted = z.strictObject({ deleted: z.string(), shop: z.string().optional() });
export const Closed = z.strictObject({ closed: z.strictObject({ shop: z.string(), visitor: z.string() }) });
export const Transferred = z.strictObject({
  transferred: z.strictObject({ shop: z.string(), visitor: z.string(), to: z.string().optional(), toGroup: z.string().optional() }),
});
/** The OpenAPI document itself (its shape is OpenAPI 3.1's; not restated here). */
export const OpenApiDocument = z.looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.looseObject({}) });
