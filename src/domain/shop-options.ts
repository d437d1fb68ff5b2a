// Validation of a shop's groups and bot, shared by the config file and the admin API:
// each problem is an OptionError whose message names the field.
import { BOT_MODES, DEFAULT_BOT, STRATEGIES, type BotConfig, type BotMode, type Group, type Strategy } from './shop.js';
import { bareJid, isJid } from '../xmpp/jid.js';

export class OptionError extends Error {}

type Obj = Record<string, unknown>;
const fail = (field: string, what: string): never => {
  throw new OptionError(`${field} must be ${what}`);
};
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
// Group names and product ids travel in commas-joined keys and in commands: no commas, no spaces.
const NAME = /^[^\s,/]{1,64}$/;

function strings(v: unknown, field: string, check: (s: string) => boolean, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && check(x))) fail(field, `an array of ${what}`);
  return [...new Set(v as string[])];
}

export function parseBot(raw: unknown, field = 'bot'): BotConfig {
  if (raw === undefined) return { ...DEFAULT_BOT };
  if (!isObj(raw)) fail(field, 'an object');
  const o = raw as Obj;
  const mode = (o.mode ?? 'none') as BotMode;
  if (!BOT_MODES.includes(mode)) fail(`${field}.mode`, `one of ${BOT_MODES.join(', ')}`);
  let url: string | undefined;
  if (o.url !== undefined) {
    try {
      const u = new URL(o.url as string);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
      url = u.toString();
    } catch {
      fail(`${field}.url`, 'an http:// or https:// URL');
    }
  }
  if (mode !== 'none' && !url) fail(`${field}.url`, `given when ${field}.mode is ${mode}`);
  const int = (k: string, dflt: number, min: number, max: number) => {
    const v = o[k] ?? dflt;
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) fail(`${field}.${k}`, `an integer in ${min}..${max}`);
    return v as number;
  };
  return {
    mode,
    ...(url ? { url } : {}),
    timeoutMs: int('timeoutMs', DEFAULT_BOT.timeoutMs, 100, 60_000),
    retries: int('retries', DEFAULT_BOT.retries, 0, 5),
  };
}

export function parseGroup(raw: unknown, field: string, name?: string): Group {
  if (!isObj(raw)) fail(field, 'an object');
  const o = raw as Obj;
  const n = name ?? o.name;
  if (typeof n !== 'string' || !NAME.test(n)) fail(`${field}.name`, '1 to 64 characters without spaces, commas or slashes');
  const group: Group = {
    name: n as string,
    isDefault: o.isDefault === undefined ? false : (o.isDefault as boolean),
    agents: strings(o.agents, `${field}.agents`, (s) => isJid(s) && s.includes('@') && !s.includes('/'), 'bare JIDs').map(bareJid),
    products: strings(o.products, `${field}.products`, (s) => NAME.test(s), 'product ids (no spaces, commas or slashes)'),
  };
  if (typeof group.isDefault !== 'boolean') fail(`${field}.isDefault`, 'true or false');
  if (o.strategy !== undefined) {
    if (!STRATEGIES.includes(o.strategy as Strategy)) fail(`${field}.strategy`, `one of ${STRATEGIES.join(', ')}`);
    group.strategy = o.strategy as Strategy;
  }
  if (o.maxSessions !== undefined) {
    if (!Number.isInteger(o.maxSessions) || (o.maxSessions as number) < 1 || (o.maxSessions as number) > 1000)
      fail(`${field}.maxSessions`, 'an integer in 1..1000');
    group.maxSessions = o.maxSessions as number;
  }
  if (o.bot !== undefined) {
    if (!BOT_MODES.includes(o.bot as BotMode)) fail(`${field}.bot`, `one of ${BOT_MODES.join(', ')}`);
    group.bot = o.bot as BotMode;
  }
  return group;
}

/** A shop's groups: names unique, at most one default, every agent a member of the shop. */
export function parseGroups(raw: unknown, field: string, shopAgents: ReadonlySet<string>): Group[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) fail(field, 'an array');
  const groups = (raw as unknown[]).map((g, i) => parseGroup(g, `${field}[${i}]`));
  checkGroups(groups, field, shopAgents);
  return groups;
}

export function checkGroups(groups: Group[], field: string, shopAgents: ReadonlySet<string>): void {
  const names = new Set<string>();
  groups.forEach((g, i) => {
    if (names.has(g.name)) fail(`${field}[${i}].name`, `unique (${g.name} is listed twice)`);
    names.add(g.name);
    for (const a of g.agents) if (!shopAgents.has(a)) fail(`${field}[${i}].agents`, `agents of the shop (${a} is not)`);
  });
  if (groups.filter((g) => g.isDefault).length > 1) fail(field, 'a list with at most one default group');
}
