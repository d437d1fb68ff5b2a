// `consultctl import config.json`: what it takes to bring a running store in line with a config file
// (the config only seeds an empty store). Pure: the plan is computed from the config and GET /shops.
import type { Config } from '../domain/config.js';

export interface ShopView {
  jid: string;
  agents: { jid: string; maxSessions: number }[];
  [field: string]: unknown;
}

export interface Step {
  say: string; // one line for the admin: + added, ~ changed, - removed
  method: 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  body?: Record<string, unknown>;
}

const SHOP_FIELDS = [
  'name',
  'welcome',
  'noAgentText',
  'strategy',
  'queueEnabled',
  'limits',
  'language',
  'texts',
  'bot',
  'answerTimeoutSec',
  'maxMissedChats',
  'hours',
  'queueMaxWaitSec',
  'supervisors',
  'canned',
] as const;
/** Settings a shop may leave out, meaning 0 (off): a config that drops one sets it back to 0. */
const ZERO_WHEN_ABSENT: ReadonlySet<string> = new Set(['answerTimeoutSec', 'maxMissedChats', 'queueMaxWaitSec']);
/** Lists a shop may leave out, meaning none. */
const EMPTY_WHEN_ABSENT: ReadonlySet<string> = new Set(['supervisors']);
/** Maps a shop may leave out, meaning none. */
const NONE_WHEN_ABSENT: ReadonlySet<string> = new Set(['canned']);
const fieldValue = (s: object, f: string) =>
  (s as Record<string, unknown>)[f] ??
  (ZERO_WHEN_ABSENT.has(f) ? 0 : EMPTY_WHEN_ABSENT.has(f) ? [] : NONE_WHEN_ABSENT.has(f) ? {} : undefined);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v));
const e = encodeURIComponent;

/**
 * Shops and memberships of the config, put where they differ; with `prune`, what the config lacks is removed. A new
 * shop is PUT whole; a shop that differs gets a PATCH of the fields that differ (its groups follow once its agents are
 * members), a membership a PUT.
 */
export function planImport(config: Config, current: ShopView[], prune = false): Step[] {
  const steps: Step[] = [];
  const now = new Map(current.map((s) => [s.jid, s]));
  for (const shop of config.shops) {
    const old = now.get(shop.jid);
    const changed = SHOP_FIELDS.filter((f) => !old || !same(fieldValue(old, f), fieldValue(shop, f)));
    if (!old) {
      const body = Object.fromEntries(SHOP_FIELDS.map((f) => [f, shop[f]]));
      steps.push({ say: `+ shop ${shop.jid} (${shop.name})`, method: 'PUT', path: `/shops/${e(shop.jid)}`, body });
    } else if (changed.length) {
      // A merge: texts the store has but the config does not name go back to the language default (null), and so
      // does a bot URL the config does not give.
      const body: Record<string, unknown> = Object.fromEntries(changed.map((f) => [f, fieldValue(shop, f)]));
      if (body.texts) {
        const texts: Record<string, unknown> = { ...shop.texts };
        for (const k of Object.keys((old.texts as object) ?? {})) if (!(k in shop.texts)) texts[k] = null;
        body.texts = texts;
      }
      if (body.bot && !shop.bot.url) body.bot = { ...shop.bot, url: null };
      if ('hours' in body && body.hours === undefined) body.hours = null; // the config has none: always open
      const what = changed.map((f) => `${f} ${show(old[f])} → ${show(shop[f])}`).join('; ');
      steps.push({ say: `~ shop ${shop.jid}: ${what}`, method: 'PATCH', path: `/shops/${e(shop.jid)}`, body });
    }
    const agents = new Map((old?.agents ?? []).map((a) => [a.jid, a]));
    for (const a of shop.agents) {
      const had = agents.get(a.jid);
      const path = `/shops/${e(shop.jid)}/agents/${e(a.jid)}`;
      if (!had)
        steps.push({
          say: `+ agent ${a.jid} in ${shop.jid} (max ${a.maxSessions})`,
          method: 'PUT',
          path,
          body: { maxSessions: a.maxSessions },
        });
      else if (had.maxSessions !== a.maxSessions) {
        steps.push({
          say: `~ agent ${a.jid} in ${shop.jid}: maxSessions ${had.maxSessions} → ${a.maxSessions}`,
          method: 'PUT',
          path,
          body: { maxSessions: a.maxSessions },
        });
      }
    }
    // Groups name agents of the shop: they are put once the memberships are there (and before any are pruned).
    if (!same(old?.groups ?? [], shop.groups)) {
      const names = shop.groups.map((g) => g.name).join(', ') || '(none)';
      steps.push({
        say: `~ groups of ${shop.jid}: ${names}`,
        method: 'PATCH',
        path: `/shops/${e(shop.jid)}`,
        body: { groups: shop.groups },
      });
    }
    if (prune && old) {
      const wanted = new Set(shop.agents.map((a) => a.jid));
      for (const a of old.agents) {
        if (!wanted.has(a.jid))
          steps.push({ say: `- agent ${a.jid} from ${shop.jid}`, method: 'DELETE', path: `/shops/${e(shop.jid)}/agents/${e(a.jid)}` });
      }
    }
  }
  if (prune) {
    const wanted = new Set(config.shops.map((s) => s.jid));
    for (const s of current) if (!wanted.has(s.jid)) steps.push({ say: `- shop ${s.jid}`, method: 'DELETE', path: `/shops/${e(s.jid)}` });
  }
  return steps;
}
