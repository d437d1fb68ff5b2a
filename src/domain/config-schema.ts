// The sidecar config's shape as zod schemas: types, ranges, defaults and unknown keys (an error naming its path).
// src/domain/config.ts resolves what depends on other fields (a shop's limits from the top-level ones, its
// welcome from its name); config/consult.schema.json is generated from ConfigSchema (`npm run gen:schema`).
// The admin API reuses ShopSchema, AgentSchema, GroupSchema and BotSchema, and formats errors with describeIssues.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ROLES } from './audit.js';
import { LANGUAGES, TEXT_VALUES, type TextKey, textProblem } from './texts.js';
import { AGENT_STATUSES, BOT_MODES, DEFAULT_BOT, DEFAULT_LIMITS, LIMIT_RANGES, type Limits, STRATEGIES } from './shop.js';
import { bareJid, isJid } from '../xmpp/jid.js';
import { isDate, isTimeZone, WEEKDAYS, type Weekday } from './hours.js';
import { CANNED_MAX, CANNED_NAME, CANNED_NAME_RULE, cannedTextProblem } from './canned.js';

/** The placeholder in config/consult.example.json: a sidecar refuses to start with it. */
export const EXAMPLE_ADMIN_TOKEN = 'change-me-admin-token';
/** The shortest admin token (and shim token) accepted. */
export const MIN_TOKEN_LENGTH = 16;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const DAY = 86400;
// Every message is what follows the field's path: "shops[0].jid must be a bare JID (user@domain)".
const must = (what: string) => (iss: { input?: unknown }) => (iss.input === undefined ? 'is required' : `must be ${what}`);

export const int = (min: number, max: number) => {
  const error = must(`an integer in ${min}..${max}`);
  return z.int({ error }).min(min, { error }).max(max, { error });
};
const text = (what = 'a non-empty string') => z.string({ error: must(what) }).min(1, { error: must(what) });
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: must(`one of ${values.join(', ')}`) });
const flag = () => z.boolean({ error: must('true or false') });
const token = () =>
  text(`a string of at least ${MIN_TOKEN_LENGTH} characters`).min(MIN_TOKEN_LENGTH, {
    error: must(`a string of at least ${MIN_TOKEN_LENGTH} characters`),
  });
/** A bare JID, kept as bareJid() writes it (the domain lower-cased). */
export const BareJidSchema = text('a bare JID (user@domain)')
  .refine((s) => isJid(s) && !s.includes('/'), { error: 'must be a bare JID (user@domain)' })
  .overwrite(bareJid);
const userJid = () =>
  z
    .string({ error: must('a bare JID (user@domain)') })
    .refine((s) => isJid(s) && s.includes('@') && !s.includes('/'), { error: 'must be a bare JID (user@domain)' })
    .overwrite(bareJid);
/** An object whose keys are all known: another one is an error naming its path (describeIssues adds a suggestion). */
const UNKNOWN_KEY = 'is not a known key';
const strict = <S extends z.ZodRawShape>(shape: S, unknownKey = UNKNOWN_KEY) =>
  z.strictObject(shape, { error: (iss) => (iss.code === 'unrecognized_keys' ? unknownKey : must('an object')(iss)) });

// Group names and product ids travel in comma-joined keys and in commands: no commas, no spaces.
const NAME = /^[^\s,/]{1,64}$/;
const names = (what: string, check: z.ZodType<string>) =>
  z
    .array(check, { error: must(`an array of ${what}`) })
    .overwrite((v) => [...new Set(v)])
    .default([]);

export const LimitsSchema = strict(
  Object.fromEntries(
    Object.entries(LIMIT_RANGES).map(([k, [min, max]]) => [k, int(min, max).default(DEFAULT_LIMITS[k as keyof Limits])]),
  ) as Record<keyof Limits, z.ZodDefault<ReturnType<typeof int>>>,
).describe('bounds a shop state keeps');
/** A shop's own limits: each one it gives overrides the top-level limits. */
export const ShopLimitsSchema = strict(
  Object.fromEntries(Object.entries(LIMIT_RANGES).map(([k, [min, max]]) => [k, int(min, max).optional()])) as Record<
    keyof Limits,
    z.ZodOptional<ReturnType<typeof int>>
  >,
);

export const TextsSchema = strict(
  Object.fromEntries(
    Object.keys(TEXT_VALUES).map((k) => [
      k,
      z
        .string({ error: 'must be a string of 1 to 2000 characters' })
        .superRefine((template, ctx) => {
          const problem = textProblem(k, template);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional(),
    ]),
  ) as Record<TextKey, z.ZodOptional<z.ZodString>>,
  `is not a text; use one of ${Object.keys(TEXT_VALUES).join(', ')}`,
).describe('the shop texts by name; each may use only its own {values} (src/domain/texts.ts)');

export const BotSchema = strict({
  mode: oneOf(BOT_MODES as unknown as readonly [string, ...string[]])
    .default(DEFAULT_BOT.mode)
    .describe('who answers first'),
  url: z
    .string({ error: must('an http:// or https:// URL') })
    .refine((s) => URL.canParse(s) && ['http:', 'https:'].includes(new URL(s).protocol), { error: 'must be an http:// or https:// URL' })
    .overwrite((s) => (URL.canParse(s) ? new URL(s).toString() : s))
    .optional(),
  timeoutMs: int(100, 60_000).default(DEFAULT_BOT.timeoutMs).describe('per attempt'),
  retries: int(0, 5).default(DEFAULT_BOT.retries).describe('further attempts after a failed one'),
}).superRefine((bot, ctx) => {
  if (bot.mode !== 'none' && !bot.url)
    ctx.addIssue({ code: 'custom', path: ['url'], message: `must be given when bot.mode is ${bot.mode}` });
});

// Opening hours (src/domain/hours.ts): local "HH:MM" spans per weekday in an IANA zone, and dated exceptions.
const clock = z
  .string({ error: must('a time HH:MM (00:00 to 24:00)') })
  .regex(/^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$/, { error: 'must be a time HH:MM (00:00 to 24:00)' });
const SpansSchema = z
  .array(
    z
      .tuple([clock, clock], { error: must('a span ["HH:MM", "HH:MM"]') })
      .refine(([from, to]) => from < to, { error: 'must end after it starts' }),
    { error: must('an array of spans ["HH:MM", "HH:MM"]') },
  )
  .max(24, { error: 'must be at most 24 spans' });
export const HoursSchema = strict({
  timeZone: text('an IANA time zone name (e.g. Asia/Shanghai)')
    .refine(isTimeZone, { error: 'must be an IANA time zone name (e.g. Asia/Shanghai)' })
    .describe('the zone whose clocks the spans follow'),
  weekly: strict(Object.fromEntries(WEEKDAYS.map((d) => [d, SpansSchema.optional()])) as Record<Weekday, z.ZodOptional<typeof SpansSchema>>)
    .prefault({})
    .describe('open spans per weekday (mon … sun), [start, end) local time; a day not listed is closed'),
  exceptions: z
    .array(
      strict({
        date: z.string({ error: must('a date YYYY-MM-DD') }).refine(isDate, { error: 'must be a date YYYY-MM-DD' }),
        hours: SpansSchema.default([]).describe('[] (or left out): closed that day'),
        note: z.string().max(200).optional(),
      }),
      { error: must('an array') },
    )
    .max(1000, { error: 'must be at most 1000 dated exceptions' })
    .default([])
    .describe('dated days whose hours replace the weekday’s: holidays closed, special days'),
}).describe('when visitors are served; outside these hours their messages are kept as left messages');
/** The longest a visitor may wait in a queue (0: no limit). */
const maxWait = () => int(0, DAY);

/** Canned replies by name (src/domain/canned.ts): names a plain word, a bounded number, texts with {visitor} {agent} {shop}. */
export const CannedSchema = z
  .record(z.string(), z.string({ error: 'must be a string' }), { error: must('an object of canned reply names to texts') })
  .superRefine((o, ctx) => {
    const names = Object.keys(o);
    if (names.length > CANNED_MAX) ctx.addIssue({ code: 'custom', message: `must have at most ${CANNED_MAX} canned replies` });
    for (const name of names) {
      const problem = CANNED_NAME.test(name) ? cannedTextProblem(o[name]) : `is not a canned reply name: ${CANNED_NAME_RULE}`;
      if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
    }
  })
  .describe(
    'canned replies by name: an agent sends #name (or /reply name) and the visitor gets the text; {visitor}, {agent}, {shop} are filled in',
  );

export const GroupSchema = strict({
  name: z
    .string({ error: must('1 to 64 characters without spaces, commas or slashes') })
    .regex(NAME, { error: 'must be 1 to 64 characters without spaces, commas or slashes' }),
  isDefault: flag().default(false).describe("the shop's default group: consults naming no mapped product go here"),
  agents: names('bare JIDs', userJid()),
  products: names(
    'product ids (no spaces, commas or slashes)',
    z.string().regex(NAME, { error: 'must be a product id (no spaces, commas or slashes)' }),
  ).describe('product ids routed to this group'),
  strategy: oneOf(STRATEGIES as unknown as readonly [string, ...string[]])
    .optional()
    .describe("else the shop's"),
  maxSessions: int(1, 1000).optional().describe("per agent, sessions of this group (besides the agent's own shop capacity)"),
  bot: oneOf(BOT_MODES as unknown as readonly [string, ...string[]])
    .optional()
    .describe("else the shop's"),
  answerTimeoutSec: int(0, DAY).optional().describe("else the shop's; 0: no answer timeout for this group's sessions"),
  hours: HoursSchema.optional().describe("else the shop's"),
  queueMaxWaitSec: maxWait().optional().describe("else the shop's; 0: no limit for this group's queue"),
  canned: CannedSchema.optional().describe("canned replies of this group's sessions, over the shop's of the same name"),
});

/** A shop's groups, checked against its agents: names unique, at most one default, every agent a member. */
export function checkGroupsInto(
  groups: readonly { name: string; isDefault: boolean; agents: readonly string[] }[],
  shopAgents: ReadonlySet<string>,
  add: (path: (string | number)[], message: string) => void,
): void {
  const seen = new Set<string>();
  groups.forEach((g, i) => {
    if (seen.has(g.name)) add([i, 'name'], `must be unique (${g.name} is listed twice)`);
    seen.add(g.name);
    const stranger = g.agents.find((a) => !shopAgents.has(a));
    if (stranger) add([i, 'agents'], `must be agents of the shop (${stranger} is not)`);
  });
  if (groups.filter((g) => g.isDefault).length > 1) add([], 'must be a list with at most one default group');
}

export const GroupsSchema = z.array(GroupSchema, { error: must('an array') }).default([]);

/** A shop's agent as the config lists it (a membership, and the agent's status when the agent is new). */
export const AgentSchema = strict({
  jid: userJid(),
  maxSessions: int(1, 1000).default(5).describe('sessions this agent takes at once in this shop'),
  status: oneOf(AGENT_STATUSES as unknown as readonly [string, ...string[]])
    .default('standard')
    .describe('standard needs an online client, dnd is never assigned, always-on always is'),
});

export const ShopSchema = strict({
  jid: BareJidSchema.describe("the shop's XMPP account"),
  name: text(),
  welcome: text().optional().describe('welcome text (default: the name)'),
  noAgentText: text().optional().describe("text when nobody can take the chat (default: the language's)"),
  strategy: oneOf(STRATEGIES as unknown as readonly [string, ...string[]]).default('least-busy'),
  queueEnabled: flag().default(true).describe('keep visitors (and their messages) waiting when no agent has room'),
  limits: ShopLimitsSchema.prefault({}).describe('this shop’s own limits (else the top-level ones)'),
  language: oneOf(LANGUAGES).default('zh').describe('the default set of every text visitors and agents read'),
  texts: TextsSchema.prefault({}),
  agents: z.array(AgentSchema, { error: must('an array') }),
  groups: GroupsSchema,
  bot: BotSchema.prefault({}),
  hours: HoursSchema.optional().describe('absent: always open'),
  queueMaxWaitSec: maxWait()
    .optional()
    .describe('a visitor waiting longer leaves the queue, its messages kept as a left message; absent or 0: no limit'),
  answerTimeoutSec: int(0, DAY)
    .optional()
    .describe('an assigned agent that sends nothing this long loses the visitor to the next agent; absent or 0: off'),
  maxMissedChats: int(0, 1000).optional().describe('an agent that misses this many chats in a row is set away; absent or 0: never'),
  supervisors: z
    .array(BareJidSchema, { error: must('a list of bare JIDs') })
    .max(50)
    .optional()
    .describe("accounts that may list, monitor, whisper to and take over the shop's sessions (not necessarily agents)"),
  canned: CannedSchema.optional(),
}).superRefine((shop, ctx) =>
  checkGroupsInto(shop.groups, new Set(shop.agents.map((a) => a.jid)), (path, message) =>
    ctx.addIssue({ code: 'custom', path: ['groups', ...path], message }),
  ),
);

export const TlsSchema = strict({
  cert: text().describe("PEM file: the sidecar's certificate (chain)"),
  key: text().describe('PEM file: its unencrypted key'),
  clientCa: text().optional().describe('PEM file: shims must present a certificate this CA signed (mutual TLS)'),
});

export const GrpcSchema = strict({
  host: text().default('127.0.0.1'),
  port: int(0, 65535).default(50051),
  shims: z
    .array(strict({ node: text().describe('the Erlang node name, e.g. ejabberd@chat1'), token: token() }), { error: must('an array') })
    .default([])
    .describe('the ejabberd nodes allowed to connect, each with its token'),
  tls: TlsSchema.optional(),
  maxStreamsPerNode: int(1, 1000).default(4).describe('open FilterStreams one ejabberd node may hold at once'),
});

/** An admin token: its name (in the audit log), role, and secret as the token itself, its SHA-256 or a file holding it. */
export const AdminTokenSchema = strict({
  name: z
    .string({ error: must('a name of 1 to 64 letters, digits, . _ or -') })
    .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'must be a name of 1 to 64 letters, digits, . _ or -' })
    .describe('who the audit log says acted'),
  role: oneOf(ROLES).describe('read: GET only; operator: sessions, left messages, agent statuses; admin: everything'),
  token: token()
    .refine((t) => t !== EXAMPLE_ADMIN_TOKEN, { error: `is the example config's placeholder (${EXAMPLE_ADMIN_TOKEN})` })
    .optional()
    .describe('the secret itself'),
  sha256: z
    .string({ error: must('64 hex digits') })
    .regex(/^[0-9a-fA-F]{64}$/, { error: 'must be 64 hex digits (the SHA-256 of the token: printf %s TOKEN | sha256sum)' })
    .optional()
    .describe('the SHA-256 of the secret, in hex, so that the config does not hold it'),
  tokenFile: text().optional().describe('a file holding the secret (read at start, surrounding white space dropped)'),
}).superRefine((t, ctx) => {
  const given = (['token', 'sha256', 'tokenFile'] as const).filter((k) => t[k] !== undefined);
  if (given.length !== 1)
    ctx.addIssue({
      code: 'custom',
      path: given.length ? [given[1]] : [],
      message: given.length
        ? `must not be given with ${given[0]} (one of token, sha256, tokenFile)`
        : 'needs one of token, sha256, tokenFile',
    });
});

export const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

export const AdminSchema = strict({
  host: text().default('127.0.0.1'),
  port: int(0, 65535).default(8088),
  token: token()
    .refine((t) => t !== EXAMPLE_ADMIN_TOKEN, {
      error: `is the example config's placeholder (${EXAMPLE_ADMIN_TOKEN}): set a secret of your own (e.g. the output of: openssl rand -hex 24)`,
    })
    .optional()
    .describe('without it the admin API does not start (e.g. the output of: openssl rand -hex 24)'),
  tokens: z
    .array(AdminTokenSchema, { error: must('an array') })
    .max(100)
    .default([])
    .describe('named admin tokens, each with a role; admin.token is one more, named admin, of role admin'),
  maxAuthFailures: int(1, 100_000).default(10),
  authWindowSec: int(1, DAY).default(60),
  auditRetentionDays: int(1, 36500).default(365).describe('audit log entries older than this are deleted'),
}).superRefine((admin, ctx) => {
  // One name, one secret, per token: the audit log names the token, and a secret must say which one it is.
  const names = new Map<string, number>(admin.token ? [['admin', -1]] : []);
  const hashes = new Map<string, number>(admin.token ? [[sha256Hex(admin.token), -1]] : []);
  const other = (i: number, what: string) => (i < 0 ? `admin.token's ${what}` : `the ${what} of tokens[${i}]`);
  admin.tokens.forEach((t, i) => {
    const clash = names.get(t.name);
    if (clash !== undefined) ctx.addIssue({ code: 'custom', path: ['tokens', i, 'name'], message: `is ${other(clash, 'name')}` });
    else names.set(t.name, i);
    const hash = t.token !== undefined ? sha256Hex(t.token) : t.sha256?.toLowerCase();
    if (hash === undefined) return;
    const same = hashes.get(hash);
    if (same !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['tokens', i, t.token !== undefined ? 'token' : 'sha256'],
        message: `is ${other(same, 'secret')}`,
      });
    else hashes.set(hash, i);
  });
});

export const MetricsSchema = strict({
  host: text().default('127.0.0.1'),
  port: int(0, 65535).default(8089),
}).describe('Prometheus /metrics on a listener of its own, no token (the admin API serves it too)');

export const TimersSchema = strict({
  agentReminderSec: int(1, DAY).default(120).describe('remind the agent of an unanswered visitor'),
  idleCloseSec: int(1, 30 * DAY)
    .default(1800)
    .describe('close a session nobody wrote in for this long'),
  offlineGraceSec: int(0, DAY).default(60).describe('an agent gone offline gets this long to come back'),
  nodeGraceSec: int(0, DAY).default(30).describe('an ejabberd node whose streams all closed gets this long to come back'),
  stickyTtlSec: int(0, 365 * DAY)
    .default(DAY)
    .describe("a returning visitor's last agent is preferred this long"),
  tickSec: int(1, 3600).default(5).describe('how often timers run'),
});

export const ArchiveSchema = strict({
  retentionDays: int(1, 36500).default(180),
  ratingWindowSec: int(0, DAY).default(600).describe('0: no rating request'),
});

// Outbound webhook events (src/bot/event-hook.ts; docs/configuration.md "Events out"): one endpoint for every shop,
// and per shop one of its own (or false: none). The secret signs each request; it is never shown or logged.
const httpUrl = () =>
  z
    .string({ error: must('an http:// or https:// URL') })
    .refine((s) => URL.canParse(s) && ['http:', 'https:'].includes(new URL(s).protocol), { error: 'must be an http:// or https:// URL' })
    .overwrite((s) => (URL.canParse(s) ? new URL(s).toString() : s));
const hookFields = {
  messages: flag().optional().describe('every message too, not only session events (default false)'),
  timeoutMs: int(100, 60_000).optional().describe('per request (default 5000)'),
};
export const EventHookSchema = strict({
  url: httpUrl(),
  secret: token().describe('HMAC-SHA256 key of the X-Consult-Signature header'),
  ...hookFields,
});
/** A shop's own webhook through the admin API (PUT /shops/{shop}/events): the secret may be left out to keep the one set. */
export const ShopWebhookFields = {
  url: httpUrl().optional().describe('where the events go (required unless off)'),
  secret: token().optional().describe('HMAC-SHA256 key of the X-Consult-Signature header; left out: the one set stays'),
  ...hookFields,
};
export const EventsSchema = strict({
  url: httpUrl().optional().describe("every shop's events (a shop may have its own under shops)"),
  secret: token().optional().describe('HMAC-SHA256 key of the X-Consult-Signature header (or CONSULT_EVENTS_SECRET)'),
  ...hookFields,
  retryBaseMs: int(10, 60_000).default(1000).describe('the first retry waits about this long, each next one twice as long'),
  retryMaxMs: int(10, 3_600_000).default(60_000).describe('and never longer than this'),
  shops: z
    .record(BareJidSchema, z.union([EventHookSchema, z.literal(false)], { error: 'must be {url, secret, …} or false' }), {
      error: must('an object of shop JIDs to {url, secret, …} or false'),
    })
    .default({})
    .describe("a shop's own endpoint over the global one, or false: no events for it"),
}).superRefine((e, ctx) => {
  if (e.url && !e.secret) ctx.addIssue({ code: 'custom', path: ['secret'], message: 'must be given with events.url' });
  if (e.secret && !e.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'must be given with events.secret' });
});

export const PostgresSchema = strict({
  connectTimeoutMs: int(100, 60_000)
    .default(2000)
    .describe('connecting to PostgreSQL (or waiting for a pooled connection) may take this long'),
  queryTimeoutMs: int(100, 600_000).default(2000).describe('any one statement may take this long (server and client side)'),
}).describe("a postgres:// store's timeouts, well below the lease period (5 s)");

export const StoreSchema = text()
  .refine((s) => s === 'memory:' || /^pglite:./.test(s) || /^postgres(ql)?:\/\//.test(s), {
    error: 'must be memory:, pglite:memory, pglite:<dir> or postgres://…',
  })
  .describe('where state lives: memory: (lost on restart), pglite:<dir> (embedded PostgreSQL), postgres://…');

/** The config file as written: every key checked, defaults filled in (src/domain/config.ts resolves the rest). */
export const ConfigSchema = strict({
  $schema: z.string().optional().describe('for editors: the JSON Schema of this file'),
  sidecarId: text().optional().describe("this sidecar's stable id (default host:grpc-port)"),
  logLevel: oneOf(LOG_LEVELS).default('info'),
  grpc: GrpcSchema.prefault({}),
  systemJid: BareJidSchema.optional().describe("realfrom of server-made auto replies (default admin@<the first shop's domain>)"),
  maxStanzaBytes: int(1024, 16 * 1024 * 1024).default(262144),
  maxBotAnswerBytes: int(1024, 16 * 1024 * 1024).default(65536),
  maxPendingDecisions: int(1, 10_000_000).default(20_000),
  commitDelayMs: int(0, 50)
    .default(5)
    .describe('under steady load a small group commit waits this long for more decisions: fewer, larger writes (0: never)'),
  limits: LimitsSchema.prefault({}),
  store: StoreSchema.default('memory:'),
  postgres: PostgresSchema.prefault({}),
  admin: AdminSchema.prefault({}),
  metrics: MetricsSchema.prefault({}),
  timers: TimersSchema.prefault({}),
  archive: ArchiveSchema.prefault({}),
  events: EventsSchema.prefault({}).describe('outbound webhook events: sessions opened, assigned, …, closed (docs/configuration.md)'),
  shops: z
    .array(ShopSchema, { error: must('an array') })
    .default([])
    .describe('seed an empty store; after that the store is the truth (consultctl import applies a changed config)'),
}).superRefine((config, ctx) => {
  const seen = new Set<string>();
  const agents = new Set(config.shops.flatMap((s) => s.agents.map((a) => a.jid)));
  config.shops.forEach((s, i) => {
    if (seen.has(s.jid))
      ctx.addIssue({ code: 'custom', path: ['shops', i, 'jid'], message: `must be listed once (${s.jid} is listed twice)` });
    seen.add(s.jid);
    if (agents.has(s.jid))
      ctx.addIssue({ code: 'custom', path: ['shops', i, 'jid'], message: `must not also be an agent (${s.jid} is one)` });
  });
});

export type ConfigInput = z.input<typeof ConfigSchema>;
export type ParsedConfig = z.output<typeof ConfigSchema>;

/** The JSON Schema of a config file (what config/consult.schema.json holds). */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ConfigSchema, { io: 'input', target: 'draft-2020-12' }),
    title: 'consult-router sidecar config (docs/configuration.md)',
  };
}

/** a.b[0].c, after the prefix's own path when given (shops[0].groups + [1, 'name'] → shops[0].groups[1].name). */
export function pathText(path: readonly PropertyKey[], prefix = ''): string {
  return path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : out ? `${out}.${String(p)}` : String(p)), prefix);
}

/** The keys the object schema at `path` knows (through defaults, optionals, arrays and refinements). */
function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  // biome-ignore lint/suspicious/noExplicitAny: zod's internal definitions are walked generically here
  let def: any = schema._zod.def;
  const unwrap = () => {
    while (def && ['optional', 'default', 'prefault', 'nullable', 'readonly', 'pipe'].includes(def.type))
      def = (def.innerType ?? def.in)?._zod.def;
  };
  for (const step of path) {
    unwrap();
    if (def?.type === 'object') def = def.shape[step as string]?._zod.def;
    else if (def?.type === 'array') def = def.element._zod.def;
    else return [];
  }
  unwrap();
  return def?.type === 'object' ? Object.keys(def.shape) : [];
}

/** The closest known key within two edits (a typo), if any. */
function closest(key: string, known: readonly string[]): string | undefined {
  const distance = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const next = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
        prev = row[j]!;
        row[j] = next;
      }
    }
    return row[b.length]!;
  };
  const best = known.map((k) => [k, distance(key, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= Math.min(2, Math.floor(key.length / 2)) ? best[0] : undefined;
}

/** One line per problem: "path message" (an unknown key: its own path, and the key it was likely meant to be). */
export function describeIssues(error: z.ZodError, schema: z.ZodType, prefix = ''): { path: string; line: string }[] {
  return error.issues.flatMap((iss) => {
    if (iss.code === 'unrecognized_keys') {
      const known = keysAt(schema, iss.path);
      return iss.keys.map((key) => {
        const path = pathText([...iss.path, key], prefix);
        const guess = closest(key, known);
        const hint = guess
          ? ` (did you mean ${guess}?)`
          : iss.message === UNKNOWN_KEY && known.length
            ? `; use one of ${known.join(', ')}`
            : '';
        return { path, line: `${path} ${iss.message}${hint}` };
      });
    }
    const path = pathText(iss.path, prefix);
    return [{ path, line: `${path || 'the top level'} ${iss.message}` }];
  });
}

/** The value as the schema parses it, or `fail` thrown with every problem's line (named from `prefix`), joined by "; ". */
export function parseOrFail<T>(schema: z.ZodType, value: unknown, prefix: string, fail: new (message: string) => Error): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new fail(
      describeIssues(parsed.error, schema, prefix)
        .map((p) => p.line)
        .join('; '),
    );
  return parsed.data as T;
}
