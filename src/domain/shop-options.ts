// A shop's groups and bot checked by their schemas (src/domain/config-schema.ts), for the admin API: each problem
// is an OptionError whose message names the field ("group.maxSessions must be an integer in 1..1000").
import type { z } from 'zod';
import { BotSchema, checkGroupsInto, GroupSchema, GroupsSchema, parseOrFail, pathText } from './config-schema.js';
import { DEFAULT_BOT, type BotConfig, type Group } from './shop.js';

export class OptionError extends Error {}

function parseAs<T>(schema: z.ZodType, raw: unknown, field: string): T {
  return parseOrFail<T>(schema, raw, field, OptionError);
}

export function parseBot(raw: unknown, field = 'bot'): BotConfig {
  if (raw === undefined) return { ...DEFAULT_BOT };
  return parseAs<BotConfig>(BotSchema, raw, field);
}

/** One group; `name` (from the URL) wins over the body's. */
export function parseGroup(raw: unknown, field: string, name?: string): Group {
  const withName = name !== undefined && typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? { ...raw, name } : raw;
  return parseAs<Group>(GroupSchema, withName, field);
}

/** A shop's groups: names unique, at most one default, every agent a member of the shop. */
export function parseGroups(raw: unknown, field: string, shopAgents: ReadonlySet<string>): Group[] {
  const groups = parseAs<Group[]>(GroupsSchema, raw, field);
  checkGroups(groups, field, shopAgents);
  return groups;
}

export function checkGroups(groups: Group[], field: string, shopAgents: ReadonlySet<string>): void {
  checkGroupsInto(groups, shopAgents, (path, message) => {
    throw new OptionError(`${pathText(path, field)} ${message}`);
  });
}
