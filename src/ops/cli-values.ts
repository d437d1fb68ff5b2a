// consultctl's option values, checked before anything is sent: each by the schema of the field it sets (the
// config's, so the CLI, the config file and the admin API agree on ranges), numbers and durations turned into
// what the API takes. A problem is a BadValue naming the flag: "--max must be an integer in 1..1000".
import { z } from 'zod';
import { AgentSchema, BareJidSchema, BotSchema, GroupSchema, parseOrFail, ShopSchema, ShopWebhookFields } from '../domain/config-schema.js';

export class BadValue extends Error {}

function check(flag: string, value: unknown, schema: z.ZodType): void {
  parseOrFail(schema, value, flag, BadValue);
}

/** Decimal digits as a number; anything else stays text, which the schema then refuses. */
const asInteger = (v: string): unknown => (/^-?\d+$/.test(v.trim()) ? Number(v) : v);

const UNITS: Record<string, number> = { ms: 1, s: 1000, sec: 1000, min: 60_000 };

/** "2500ms", "3s", "1.5 s", "1min" in ms; undefined without a unit (a bare number could mean either). */
export function durationMs(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min)\s*$/i.exec(v);
  return m ? Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!) : undefined;
}

const show = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

function checkDuration(flag: string, v: string, schema: z.ZodNumber | z.ZodDefault<z.ZodNumber>): number {
  const inner = schema instanceof z.ZodDefault ? (schema.unwrap() as z.ZodNumber) : schema;
  const range = `from ${show(inner.minValue ?? 0)} to ${show(inner.maxValue ?? Number.MAX_SAFE_INTEGER)}`;
  const ms = durationMs(v);
  if (ms === undefined || !schema.safeParse(ms).success) {
    const example = /^\s*\d+\s*$/.test(v) ? `${v.trim()}ms` : '3s or 2500ms';
    throw new BadValue(`${flag} must be a duration ${range} with its unit (e.g. ${example}; units: ms, s, min)`);
  }
  return ms;
}

const TRUE_OR_FALSE = z.enum(['true', 'false'], { error: 'must be true or false' });
const TIME = z.string().refine((v) => (/^\d+$/.test(v) ? true : /^\d{4}-\d\d-\d\d/.test(v) && Number.isFinite(Date.parse(v))), {
  error: 'must be ms since the epoch or an ISO 8601 date (e.g. 2026-01-31 or 2026-01-31T08:00:00Z)',
});
const LIMIT = z.int({ error: 'must be a positive integer' }).min(1, { error: 'must be a positive integer' });
const FORMAT = z.enum(['json', 'csv'], { error: 'must be json or csv' });

/** Which schema checks each option's value (integers are given to it as numbers). */
const OPTIONS: Record<string, { schema: z.ZodType; integer?: true }> = {
  max: { schema: AgentSchema.shape.maxSessions, integer: true },
  retries: { schema: BotSchema.shape.retries, integer: true },
  limit: { schema: LIMIT, integer: true },
  queue: { schema: TRUE_OR_FALSE },
  default: { schema: TRUE_OR_FALSE },
  messages: { schema: TRUE_OR_FALSE },
  strategy: { schema: ShopSchema.shape.strategy },
  bot: { schema: GroupSchema.shape.bot },
  'bot-url': { schema: BotSchema.shape.url },
  name: { schema: ShopSchema.shape.name },
  welcome: { schema: ShopSchema.shape.name },
  'no-agent-text': { schema: ShopSchema.shape.name },
  format: { schema: FORMAT },
  from: { schema: TIME },
  to: { schema: TIME },
  shop: { schema: BareJidSchema },
  visitor: { schema: BareJidSchema },
  agent: { schema: BareJidSchema },
  'max-wait': { schema: ShopSchema.shape.queueMaxWaitSec, integer: true },
  group: { schema: GroupSchema.shape.name },
};

/**
 * Checks every option given and the values among the positionals (an agent status, a bot mode), in place: --timeout
 * becomes its ms. Throws a BadValue naming the first flag at fault; nothing has been sent by then.
 */
export function checkValues(opt: Record<string, string | boolean | undefined>, positionals: readonly string[]): void {
  for (const [flag, { schema, integer }] of Object.entries(OPTIONS)) {
    const v = opt[flag];
    if (typeof v === 'string') check(`--${flag}`, integer ? asInteger(v) : v, schema);
  }
  if (typeof opt.supervisors === 'string')
    for (const jid of opt.supervisors
      .split(',')
      .map((j) => j.trim())
      .filter(Boolean))
      check('--supervisors', jid, BareJidSchema);
  const [cmd, sub] = positionals;
  // --timeout: the bot's, or a webhook's request timeout
  const timeout = cmd === 'webhook' ? ShopWebhookFields.timeoutMs.unwrap() : BotSchema.shape.timeoutMs;
  if (typeof opt.timeout === 'string') opt.timeout = String(checkDuration('--timeout', opt.timeout, timeout));
  if (cmd === 'webhook' && sub === 'set' && positionals[3] !== undefined)
    check('webhook URL', positionals[3], ShopWebhookFields.url.unwrap());
  if (cmd === 'agent' && sub === 'status' && positionals[3] !== undefined) check('status', positionals[3], AgentSchema.shape.status);
  if (cmd === 'bot' && positionals[2] !== undefined) check('bot mode', positionals[2], BotSchema.shape.mode);
}
