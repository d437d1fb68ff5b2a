// Sidecar configuration: the config file's shape is checked by ConfigSchema (src/domain/config-schema.ts), with
// errors that name the field; settings from the environment and the command line go through the same schema
// (src/ops/config-file.ts reads the file). Here: the Config the sidecar uses, and what depends on other fields.
import type { z } from 'zod';
import {
  ConfigSchema,
  describeIssues,
  EXAMPLE_ADMIN_TOKEN,
  type LOG_LEVELS,
  MIN_TOKEN_LENGTH,
  type ParsedConfig,
} from './config-schema.js';
import { DEFAULT_NO_AGENT_TEXT, type Texts } from './texts.js';
import type { AgentStatus, BotConfig, Group, Limits, Shop, ShopWebhook } from './shop.js';
import { domainOf } from '../xmpp/jid.js';
import type { Role } from './audit.js';

export { EXAMPLE_ADMIN_TOKEN, MIN_TOKEN_LENGTH };

export interface AgentConfig {
  jid: string;
  maxSessions: number;
  status: AgentStatus;
}

/** A shop as the config gives it: the shop itself and its agents (seeded into the store on first start). */
export interface ShopConfig extends Shop {
  agents: AgentConfig[];
}

/** Closed sessions: how long their transcripts are kept, and how long a visitor may rate one. */
export interface ArchiveConfig {
  retentionDays: number;
  ratingWindowSec: number; // 0: no rating request
}

/** Session timers, in seconds (QChat's production values as defaults where it had them). */
export interface Timers {
  agentReminderSec: number; // remind the agent of an unanswered visitor
  idleCloseSec: number; // close a session nobody wrote in for this long
  offlineGraceSec: number; // an agent gone offline gets this long to come back
  nodeGraceSec: number; // an ejabberd node whose streams all closed gets this long to come back before its presence goes
  stickyTtlSec: number; // a returning visitor's last agent is preferred this long (sticky strategy)
  tickSec: number; // how often timers run
}

export interface Config {
  /**
   * This sidecar's stable id (default host:grpc-port): shops are spread over the sidecars sharing a database by it,
   * so a sidecar that restarts under the same id gets the same shops back.
   */
  sidecarId?: string;
  /** pino's level for the JSON log lines. */
  logLevel: (typeof LOG_LEVELS)[number];
  /** Where the sidecar listens; `shims`: the credential of each ejabberd node allowed to connect. */
  grpc: {
    host: string;
    port: number;
    shims: { node: string; token: string }[];
    tls?: TlsConfig;
    /** Open FilterStreams one ejabberd node may hold at once; one more is refused with RESOURCE_EXHAUSTED. */
    maxStreamsPerNode: number;
  };
  /**
   * realfrom of server-made auto replies (the seed shows admin@<domain>): given, or admin@ the first shop's domain;
   * '' when the config has neither (its shops are in the store): main.ts fills it in with withSystemJid().
   */
  systemJid: string;
  /**
   * Larger stanzas are rejected with policy-violation instead of being parsed; a stanza the sidecar builds from
   * outside input (a bot answer) that would be larger is not sent (the visitor goes to a human).
   */
  maxStanzaBytes: number;
  /** A bot webhook's answer is read up to this many bytes; a longer one is a failed answer (the visitor goes to a human). */
  maxBotAnswerBytes: number;
  /** Decisions waiting to be durable; beyond this, new stanzas get a quick resource-constraint (overload). */
  maxPendingDecisions: number;
  /** Under steady load, how long a small group commit waits for more decisions (src/desk/journal.ts); 0 never. */
  commitDelayMs: number;
  /** Defaults for every shop's limits (each shop may override them). */
  limits: Limits;
  /** memory:, pglite:<dir> or postgres://… */
  store: string;
  /** A postgres:// store's timeouts, in ms: connecting (or waiting for a pooled connection), and any one statement. */
  postgres: PostgresConfig;
  /**
   * Admin HTTP API and /metrics; the API only starts with a token (at least 16 characters, not the example's).
   * A client address that fails authentication maxAuthFailures times within authWindowSec gets 429 until the window ends.
   * `tokens`: every admin token, admin.token among them (named admin, of role admin); auditRetentionDays: how long
   * the audit log keeps an entry.
   */
  admin: {
    host: string;
    port: number;
    token?: string;
    tokens: AdminTokenConfig[];
    maxAuthFailures: number;
    authWindowSec: number;
    auditRetentionDays: number;
  };
  /** Prometheus /metrics on a listener of its own, no token, whether or not the admin API runs (it serves /metrics too). */
  metrics: { host: string; port: number };
  timers: Timers;
  archive: ArchiveConfig;
  /** Outbound webhook events (src/desk/event-sender.ts). */
  events: EventsConfig;
  shops: ShopConfig[];
}

/** Where a shop's events go, and how they are signed (X-Consult-Signature) and sent. */
export interface EventHook {
  url: string;
  secret: string;
  messages: boolean;
  timeoutMs: number;
}

export interface EventsConfig {
  /** Every shop's endpoint, unless the shop has its own (or null: none). */
  all?: EventHook;
  shops: Record<string, EventHook | null>;
  retryBaseMs: number;
  retryMaxMs: number;
  /** What a shop's own webhook (set through the admin API) leaves out: events.messages, events.timeoutMs. */
  messages?: boolean;
  timeoutMs?: number;
}

/**
 * The endpoint of a shop's events, if it has one: the shop's own as stored (`stored`, set through the admin API;
 * false: none), else the config's for the shop, else the config's for every shop.
 */
export function eventHookOf(events: EventsConfig, shop: string, stored?: ShopWebhook | false): EventHook | undefined {
  if (stored === false) return undefined;
  if (stored) {
    const { url, secret } = stored;
    return { url, secret, messages: stored.messages ?? events.messages ?? false, timeoutMs: stored.timeoutMs ?? events.timeoutMs ?? 5000 };
  }
  const own = events.shops[shop];
  return own === null ? undefined : (own ?? events.all);
}

/**
 * Kept well below the lease period (5 s) by default: a lease round or a journal write against a server that hangs
 * fails (and says so) before the leases it renews run out.
 */
export interface PostgresConfig {
  connectTimeoutMs: number;
  queryTimeoutMs: number;
}

/** A named admin token with its role; its secret is exactly one of token, sha256 (hex) and tokenFile. */
export interface AdminTokenConfig {
  name: string;
  role: Role;
  token?: string;
  sha256?: string;
  tokenFile?: string;
}

/** grpc.tls: PEM file paths. With clientCa, shims must present a certificate it signed (mutual TLS). */
export interface TlsConfig {
  cert: string;
  key: string;
  clientCa?: string;
}

export class ConfigError extends Error {}

/** A setting given outside the config file: an environment variable or a command-line flag. */
export interface Override {
  /** Where it came from, as the admin wrote it: CONSULT_GRPC_PORT or --grpc-port. */
  source: string;
  path: readonly string[];
  value: string;
}

/** The settings the environment and the command line may give, over the config file's (flags over variables). */
export const OUTSIDE_SETTINGS: readonly { env: string; flag?: string; path: readonly string[]; number?: true }[] = [
  { env: 'CONSULT_STORE', flag: 'store', path: ['store'] },
  { env: 'CONSULT_ADMIN_TOKEN', path: ['admin', 'token'] }, // no flag: a secret on a command line is visible to every local user
  { env: 'CONSULT_EVENTS_SECRET', path: ['events', 'secret'] },
  { env: 'CONSULT_GRPC_HOST', flag: 'grpc-host', path: ['grpc', 'host'] },
  { env: 'CONSULT_GRPC_PORT', flag: 'grpc-port', path: ['grpc', 'port'], number: true },
  { env: 'CONSULT_ADMIN_HOST', flag: 'admin-host', path: ['admin', 'host'] },
  { env: 'CONSULT_ADMIN_PORT', flag: 'admin-port', path: ['admin', 'port'], number: true },
  { env: 'CONSULT_LOG_LEVEL', flag: 'log-level', path: ['logLevel'] },
  { env: 'CONSULT_SIDECAR_ID', flag: 'sidecar-id', path: ['sidecarId'] },
];

/** The overrides the environment and the flags give, flags last (they win); an empty variable counts as unset. */
export function outsideOverrides(env: Record<string, string | undefined>, flags: Record<string, unknown> = {}): Override[] {
  const out: Override[] = [];
  for (const s of OUTSIDE_SETTINGS) {
    const fromEnv = env[s.env];
    if (fromEnv !== undefined && fromEnv !== '') out.push({ source: s.env, path: s.path, value: fromEnv });
  }
  for (const s of OUTSIDE_SETTINGS) {
    const fromFlag = s.flag === undefined ? undefined : flags[s.flag];
    if (typeof fromFlag === 'string') out.push({ source: `--${s.flag}`, path: s.path, value: fromFlag });
  }
  return out;
}

/** raw with the overrides put in (a copy); numbers given as decimal digits become numbers, anything else stays text. */
function withOverrides(raw: unknown, overrides: readonly Override[]): unknown {
  if (overrides.length === 0 || typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const out = structuredClone(raw) as Record<string, unknown>;
  for (const o of overrides) {
    const numeric = OUTSIDE_SETTINGS.find((s) => s.path.join('.') === o.path.join('.'))?.number;
    let at = out;
    for (const key of o.path.slice(0, -1)) {
      const next = at[key];
      at = at[key] = typeof next === 'object' && next !== null && !Array.isArray(next) ? { ...(next as object) } : {};
    }
    at[o.path.at(-1)!] = numeric && /^\d+$/.test(o.value.trim()) ? Number(o.value) : o.value;
  }
  return out;
}

/**
 * The checked config: raw is what the file holds (after JSON or YAML), overrides what the environment and the flags
 * give (the last one for a path wins). A problem is a ConfigError naming where it came from: "config: timers.tickSec
 * must be an integer in 1..3600", "CONSULT_GRPC_PORT: grpc.port must be …", "--grpc-port: grpc.port must be …".
 */
export function parseConfig(raw: unknown, overrides: readonly Override[] = []): Config {
  const parsed = ConfigSchema.safeParse(withOverrides(raw, overrides));
  if (!parsed.success) throw new ConfigError(problems(parsed.error, overrides));
  return resolve(parsed.data);
}

const SHOWN = 5;
function problems(error: z.ZodError, overrides: readonly Override[]): string {
  const lines = describeIssues(error, ConfigSchema).map(({ path, line }) => {
    const from = [...overrides].reverse().find((o) => o.path.join('.') === path);
    return `${from ? from.source : 'config'}: ${line}`;
  });
  const more = lines.length > SHOWN ? `; and ${lines.length - SHOWN} more` : '';
  return lines.slice(0, SHOWN).join('; ') + more;
}

function resolve(c: ParsedConfig): Config {
  const shops = c.shops.map(
    (s): ShopConfig => ({
      jid: s.jid,
      name: s.name,
      welcome: s.welcome ?? s.name,
      noAgentText: s.noAgentText ?? DEFAULT_NO_AGENT_TEXT[s.language],
      strategy: s.strategy as Shop['strategy'],
      queueEnabled: s.queueEnabled,
      limits: { ...c.limits, ...definedOnly(s.limits) },
      language: s.language,
      texts: s.texts as Partial<Texts>,
      agents: s.agents.map((a) => ({ jid: a.jid, maxSessions: a.maxSessions, status: a.status as AgentStatus })),
      groups: s.groups as Group[],
      bot: s.bot as BotConfig,
      ...definedOnly({ answerTimeoutSec: s.answerTimeoutSec, maxMissedChats: s.maxMissedChats }),
      ...definedOnly({ hours: s.hours as Shop['hours'], queueMaxWaitSec: s.queueMaxWaitSec }),
      ...(s.supervisors?.length ? { supervisors: [...new Set(s.supervisors)] } : {}),
      ...(s.canned && Object.keys(s.canned).length ? { canned: s.canned } : {}),
    }),
  );
  const { host, port, shims, tls, maxStreamsPerNode } = c.grpc;
  return {
    sidecarId: c.sidecarId,
    logLevel: c.logLevel,
    grpc: { host, port, shims, ...(tls ? { tls } : {}), maxStreamsPerNode },
    systemJid: c.systemJid ?? (shops[0] ? `admin@${domainOf(shops[0].jid)}` : ''),
    maxStanzaBytes: c.maxStanzaBytes,
    maxBotAnswerBytes: c.maxBotAnswerBytes,
    maxPendingDecisions: c.maxPendingDecisions,
    commitDelayMs: c.commitDelayMs,
    limits: c.limits,
    store: c.store,
    postgres: c.postgres,
    admin: {
      ...c.admin,
      tokens: [...(c.admin.token ? [{ name: 'admin', role: 'admin' as const, token: c.admin.token }] : []), ...c.admin.tokens],
    },
    metrics: c.metrics,
    timers: c.timers,
    archive: c.archive,
    events: resolveEvents(c.events),
    shops,
  };
}

function resolveEvents(e: ParsedConfig['events']): EventsConfig {
  const hook = (h: { url: string; secret: string; messages?: boolean; timeoutMs?: number }): EventHook => ({
    url: h.url,
    secret: h.secret,
    messages: h.messages ?? e.messages ?? false,
    timeoutMs: h.timeoutMs ?? e.timeoutMs ?? 5000,
  });
  return {
    ...(e.url && e.secret ? { all: hook({ url: e.url, secret: e.secret }) } : {}),
    shops: Object.fromEntries(Object.entries(e.shops).map(([jid, h]) => [jid, h === false ? null : hook(h)])),
    retryBaseMs: e.retryBaseMs,
    retryMaxMs: Math.max(e.retryBaseMs, e.retryMaxMs),
    ...(e.messages !== undefined ? { messages: e.messages } : {}),
    ...(e.timeoutMs !== undefined ? { timeoutMs: e.timeoutMs } : {}),
  };
}

const definedOnly = <T extends object>(o: T): Partial<T> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

/** The config with its systemJid: admin@ the first of the store's shops when the config could not say (no shops). */
export function withSystemJid(config: Config, storeShops: readonly string[]): Config {
  if (config.systemJid) return config;
  return { ...config, systemJid: `admin@${storeShops[0] ? domainOf(storeShops[0]) : 'localhost'}` };
}
