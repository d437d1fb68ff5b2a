// Sidecar configuration: validated up front with errors that name the field (src/ops/config-file.ts reads the file).
import { DEFAULT_NO_AGENT_TEXT, LANGUAGES, textProblem, type Texts } from './texts.js';
import { OptionError, parseBot, parseGroups } from './shop-options.js';
import { AGENT_STATUSES, DEFAULT_LIMITS, LIMIT_RANGES, STRATEGIES, type AgentStatus, type Limits, type Shop } from './shop.js';
import { bareJid, isJid } from '../xmpp/jid.js';

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
  /** Where the sidecar listens; `shims`: the credential of each ejabberd node allowed to connect. */
  grpc: {
    host: string;
    port: number;
    shims: { node: string; token: string }[];
    tls?: TlsConfig;
    /** Open FilterStreams one ejabberd node may hold at once; one more is refused with RESOURCE_EXHAUSTED. */
    maxStreamsPerNode: number;
  };
  /** realfrom of server-made auto replies (the seed shows admin@<domain>). */
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
  /** Defaults for every shop's limits (each shop may override them). */
  limits: Limits;
  /** memory:, pglite:<dir> or postgres://… */
  store: string;
  /**
   * Admin HTTP API and /metrics; the API only starts with a token (at least 16 characters, not the example's).
   * A client address that fails authentication maxAuthFailures times within authWindowSec gets 429 until the window ends.
   */
  admin: { host: string; port: number; token?: string; maxAuthFailures: number; authWindowSec: number };
  timers: Timers;
  archive: ArchiveConfig;
  shops: ShopConfig[];
}

/** grpc.tls: PEM file paths. With clientCa, shims must present a certificate it signed (mutual TLS). */
export interface TlsConfig {
  cert: string;
  key: string;
  clientCa?: string;
}

export class ConfigError extends Error {}

/** The placeholder in config/consult.example.json: a sidecar refuses to start with it. */
export const EXAMPLE_ADMIN_TOKEN = 'change-me-admin-token';
/** The shortest admin token (and shim token) accepted. */
export const MIN_TOKEN_LENGTH = 16;

function adminToken(admin: Obj): string | undefined {
  if (admin.token === undefined) return undefined;
  const token = need(
    typeof admin.token === 'string' && admin.token.length >= MIN_TOKEN_LENGTH,
    admin.token as string,
    'admin.token',
    `a string of at least ${MIN_TOKEN_LENGTH} characters (e.g. the output of: openssl rand -hex 24)`,
  );
  if (token === EXAMPLE_ADMIN_TOKEN)
    throw new ConfigError(
      `config: admin.token is the example config's placeholder (${EXAMPLE_ADMIN_TOKEN}): set a secret of your own (e.g. the output of: openssl rand -hex 24)`,
    );
  return token;
}

type Obj = Record<string, unknown>;

function need<T>(ok: boolean, value: T, where: string, what: string): T {
  if (!ok) throw new ConfigError(`config: ${where} must be ${what}`);
  return value;
}
const str = (o: Obj, k: string, where: string, dflt?: string): string => {
  const v = o[k] ?? dflt;
  return need(typeof v === 'string' && v.length > 0, v as string, `${where}.${k}`, 'a non-empty string');
};
const int = (o: Obj, k: string, where: string, dflt: number, min: number, max: number): number => {
  const v = o[k] ?? dflt;
  return need(
    Number.isInteger(v) && (v as number) >= min && (v as number) <= max,
    v as number,
    `${where}.${k}`,
    `an integer in ${min}..${max}`,
  );
};
const bool = (o: Obj, k: string, where: string, dflt: boolean): boolean => {
  const v = o[k] ?? dflt;
  return need(typeof v === 'boolean', v as boolean, `${where}.${k}`, 'true or false');
};
const oneOf = <T extends string>(o: Obj, k: string, where: string, values: readonly T[], dflt: T): T => {
  const v = o[k] ?? dflt;
  return need(values.includes(v as T), v as T, `${where}.${k}`, `one of ${values.join(', ')}`);
};
const jid = (o: Obj, k: string, where: string, dflt?: string): string => {
  const v = str(o, k, where, dflt);
  return need(isJid(v) && !v.includes('/'), bareJid(v), `${where}.${k}`, 'a bare JID (user@domain)');
};

/** A shop's supervisors: bare JIDs, at most 50 (absent or empty: none). */
function supervisorsIn(s: Obj, where: string): Pick<Shop, 'supervisors'> {
  const raw = s.supervisors ?? [];
  need(Array.isArray(raw) && raw.length <= 50, raw, `${where}.supervisors`, 'a list of at most 50 bare JIDs');
  const list = (raw as unknown[]).map((v, i) =>
    bareJid(
      need(typeof v === 'string' && isJid(v) && !v.includes('/'), v as string, `${where}.supervisors[${i}]`, 'a bare JID (user@domain)'),
    ),
  );
  return list.length > 0 ? { supervisors: [...new Set(list)] } : {};
}

function textsOf(raw: unknown, where: string): Partial<Texts> {
  const o = need(typeof (raw ?? {}) === 'object' && raw !== null && !Array.isArray(raw), (raw ?? {}) as Obj, where, 'an object');
  for (const [k, v] of Object.entries(o)) {
    const problem = textProblem(k, v);
    if (problem) throw new ConfigError(`config: ${where}.${k} ${problem}`);
  }
  return o as Partial<Texts>;
}

function limitsOf(raw: unknown, where: string, dflt: Limits): Limits {
  const o = need(typeof (raw ?? {}) === 'object' && raw !== null, (raw ?? {}) as Obj, where, 'an object');
  for (const k of Object.keys(o)) need(k in LIMIT_RANGES, 0, `${where}.${k}`, `one of ${Object.keys(LIMIT_RANGES).join(', ')}`);
  const out = { ...dflt };
  for (const [k, [min, max]] of Object.entries(LIMIT_RANGES)) out[k as keyof Limits] = int(o, k, where, dflt[k as keyof Limits], min, max);
  return out;
}

function optionsOf<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof OptionError) throw new ConfigError(`config: ${e.message}`);
    throw e;
  }
}

function tlsOf(raw: unknown): TlsConfig {
  const o = need(typeof raw === 'object' && raw !== null && !Array.isArray(raw), raw as Obj, 'grpc.tls', 'an object');
  for (const k of Object.keys(o)) need(['cert', 'key', 'clientCa'].includes(k), 0, `grpc.tls.${k}`, 'one of cert, key, clientCa');
  const tls: TlsConfig = { cert: str(o, 'cert', 'grpc.tls'), key: str(o, 'key', 'grpc.tls') };
  if (o.clientCa !== undefined) tls.clientCa = str(o, 'clientCa', 'grpc.tls');
  return tls;
}

export function parseConfig(raw: unknown): Config {
  const root = need(typeof raw === 'object' && raw !== null, raw as Obj, 'the top level', 'an object');
  const limits = limitsOf(root.limits, 'limits', DEFAULT_LIMITS);
  const grpc = (root.grpc ?? {}) as Obj;
  const shopsRaw = need(Array.isArray(root.shops) && root.shops.length > 0, root.shops as Obj[], 'shops', 'a non-empty array');
  const shops = shopsRaw.map((s, i): ShopConfig => {
    const where = `shops[${i}]`;
    const agentsRaw = need(Array.isArray(s.agents), s.agents as Obj[], `${where}.agents`, 'an array');
    const name = str(s, 'name', where);
    const language = oneOf(s, 'language', where, LANGUAGES, 'zh');
    const agents = agentsRaw.map((a, j) => ({
      jid: jid(a, 'jid', `${where}.agents[${j}]`),
      maxSessions: int(a, 'maxSessions', `${where}.agents[${j}]`, 5, 1, 1000),
      status: oneOf(a, 'status', `${where}.agents[${j}]`, AGENT_STATUSES, 'standard'),
    }));
    return {
      jid: jid(s, 'jid', where),
      name,
      welcome: str(s, 'welcome', where, name),
      noAgentText: str(s, 'noAgentText', where, DEFAULT_NO_AGENT_TEXT[language]),
      strategy: oneOf(s, 'strategy', where, STRATEGIES, 'least-busy'),
      queueEnabled: bool(s, 'queueEnabled', where, true),
      limits: limitsOf(s.limits, `${where}.limits`, limits),
      language,
      texts: textsOf(s.texts, `${where}.texts`),
      agents,
      ...supervisorsIn(s, where),
      ...optionsOf(() => ({
        groups: parseGroups(s.groups, `${where}.groups`, new Set(agents.map((a) => a.jid))),
        bot: parseBot(s.bot, `${where}.bot`),
      })),
    };
  });
  const seen = new Set<string>();
  for (const s of shops) {
    need(!seen.has(s.jid), 0, `shop ${s.jid}`, 'listed once');
    seen.add(s.jid);
  }
  const allAgents = new Set(shops.flatMap((s) => s.agents.map((a) => a.jid)));
  for (const s of shops) need(!allAgents.has(s.jid), 0, `shop ${s.jid}`, 'a JID that is not also an agent');
  const firstDomain = shops[0].jid.split('@')[1];
  const t = (root.timers ?? {}) as Obj;
  const admin = need(typeof (root.admin ?? {}) === 'object' && root.admin !== null, (root.admin ?? {}) as Obj, 'admin', 'an object');
  const DAY = 86400;
  const ar = (root.archive ?? {}) as Obj;
  return {
    sidecarId: root.sidecarId === undefined ? undefined : str(root, 'sidecarId', 'config'),
    grpc: {
      host: str(grpc, 'host', 'grpc', '127.0.0.1'),
      port: int(grpc, 'port', 'grpc', 50051, 0, 65535),
      shims: need(Array.isArray(grpc.shims ?? []), (grpc.shims ?? []) as Obj[], 'grpc.shims', 'an array').map((c, i) => ({
        node: str(c, 'node', `grpc.shims[${i}]`),
        token: need(
          typeof c.token === 'string' && c.token.length >= MIN_TOKEN_LENGTH,
          c.token as string,
          `grpc.shims[${i}].token`,
          `a string of at least ${MIN_TOKEN_LENGTH} characters`,
        ),
      })),
      ...(grpc.tls === undefined ? {} : { tls: tlsOf(grpc.tls) }),
      maxStreamsPerNode: int(grpc, 'maxStreamsPerNode', 'grpc', 4, 1, 1000),
    },
    systemJid: jid(root, 'systemJid', 'config', `admin@${firstDomain}`),
    maxStanzaBytes: int(root, 'maxStanzaBytes', 'config', 262144, 1024, 16 * 1024 * 1024),
    maxBotAnswerBytes: int(root, 'maxBotAnswerBytes', 'config', 65536, 1024, 16 * 1024 * 1024),
    maxPendingDecisions: int(root, 'maxPendingDecisions', 'config', 20_000, 1, 10_000_000),
    limits,
    store: str(root, 'store', 'config', 'memory:'),
    admin: {
      host: str(admin, 'host', 'admin', '127.0.0.1'),
      port: int(admin, 'port', 'admin', 8088, 0, 65535),
      token: adminToken(admin),
      maxAuthFailures: int(admin, 'maxAuthFailures', 'admin', 10, 1, 100_000),
      authWindowSec: int(admin, 'authWindowSec', 'admin', 60, 1, DAY),
    },
    timers: {
      agentReminderSec: int(t, 'agentReminderSec', 'timers', 120, 1, DAY),
      idleCloseSec: int(t, 'idleCloseSec', 'timers', 1800, 1, 30 * DAY),
      offlineGraceSec: int(t, 'offlineGraceSec', 'timers', 60, 0, DAY),
      nodeGraceSec: int(t, 'nodeGraceSec', 'timers', 30, 0, DAY),
      stickyTtlSec: int(t, 'stickyTtlSec', 'timers', DAY, 0, 365 * DAY),
      tickSec: int(t, 'tickSec', 'timers', 5, 1, 3600),
    },
    archive: {
      retentionDays: int(ar, 'retentionDays', 'archive', 180, 1, 36500),
      ratingWindowSec: int(ar, 'ratingWindowSec', 'archive', 600, 0, DAY),
    },
    shops,
  };
}
