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
  method: 'PUT' | 'DELETE';
  path: string;
  body?: Record<string, unknown>;
}

const SHOP_FIELDS = ['name', 'welcome', 'noAgentText', 'strategy', 'queueEnabled', 'limits', 'language', 'texts', 'bot'] as const;
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v));
const e = encodeURIComponent;

/** Shops and memberships of the config, put where they differ; with `prune`, what the config lacks is removed. */
export function planImport(config: Config, current: ShopView[], prune = false): Step[] {
  const steps: Step[] = [];
  const now = new Map(current.map((s) => [s.jid, s]));
  for (const shop of config.shops) {
    const old = now.get(shop.jid);
    const body = Object.fromEntries(SHOP_FIELDS.map((f) => [f, shop[f]]));
    // Texts the store has but the config does not name go back to the language default.
    if (old)
      for (const k of Object.keys((old.texts as object) ?? {})) if (!(k in shop.texts)) (body.texts as Record<string, unknown>)[k] = null;
    const changed = SHOP_FIELDS.filter((f) => !old || !same(old[f], shop[f]));
    if (!old) steps.push({ say: `+ shop ${shop.jid} (${shop.name})`, method: 'PUT', path: `/shops/${e(shop.jid)}`, body });
    else if (changed.length) {
      const what = changed.map((f) => `${f} ${show(old[f])} → ${show(shop[f])}`).join('; ');
      steps.push({ say: `~ shop ${shop.jid}: ${what}`, method: 'PUT', path: `/shops/${e(shop.jid)}`, body });
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
      steps.push({ say: `~ groups of ${shop.jid}: ${names}`, method: 'PUT', path: `/shops/${e(shop.jid)}`, body: { groups: shop.groups } });
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
