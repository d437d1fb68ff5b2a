#!/usr/bin/env node
// consultctl: the admin HTTP API from a shell. `npm run consultctl -- help` (or `node dist/cli.js --help`).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { planImport, type ShopView } from './admin/import.js';
import { type Config, ConfigError, outsideOverrides } from './domain/config.js';
import { BadValue, checkValues } from './ops/cli-values.js';
import { loadConfig, readAdminTokens } from './ops/config-file.js';
import { packageVersion } from './ops/version.js';

const USAGE = `usage: consultctl [--url URL] [--token TOKEN] <command>

  shops                                   list shops with their agents
  shop <jid>                              show one shop
  shop set <jid> [--name N] [--welcome W] [--no-agent-text T]
                 [--strategy sticky|least-busy|round-robin|random] [--queue true|false]
                 [--max-wait SECONDS] [--supervisors JID,JID,...]
                                          change the fields given (a new shop needs --name;
                                          --max-wait: the longest wait in the queue, 0 none;
                                          --supervisors: who may monitor, whisper, take over; '' none)
  hours <shop> <hours.json>|off           set the opening hours (a JSON object as in the config's
                                          shops[].hours), or remove them (always open)
  shop rm <jid>
  agent <jid>                             status, shops and online resources
  agent add <shop> <agent> [--max N]      add or update a membership (without --max: kept, 5 if new)
  agent rm <shop> <agent>
  agent status <jid> standard|dnd|always-on
  sessions [--shop JID]
  close <shop> <visitor>
  transfer <shop> <visitor> <to>|#<group> [--reason TEXT]
  queue <shop>
  left <shop>                             left messages (outside hours, out of the queue), oldest first
  left close <shop> <visitor>             close a left message (its kept messages are dropped)
  abandoned <shop>                        waits that ended without an agent, per group and reason
  events <shop>                           the shop's webhook events: where they go, how many wait
  webhook <shop>                          the shop's own webhook and the one in effect (never the secret)
  webhook set <shop> <url> [--secret-file F] [--messages true|false] [--timeout D]
                                          set it over the config's (the secret: --secret-file or
                                          CONSULT_WEBHOOK_SECRET; left out, the one set stays)
  webhook off <shop>                      no events for the shop, whatever the config says
  webhook rm <shop>                       drop its own setting: the config's events apply again
  group set <shop> <name> [--agents a,b] [--products p,q] [--default true|false]
            [--strategy S] [--max N] [--bot none|bot-first|human-first]
                                          create or replace the group (what is left out: its default)
  group rm <shop> <name>
  canned <shop> [--group G]               the shop's canned replies (--group: a group's, over the shop's)
  canned set <shop> <name> <text> [--group G]
                                          create or replace one: an agent sends #name (or /reply name);
                                          the text may use {visitor}, {agent} and {shop}
  canned rm <shop> <name> [--group G]
                                          (archive and stats take --tag LABEL too: the sessions an
                                          agent tagged so with /tag)
  bot <shop> none|bot-first|human-first [--bot-url URL] [--timeout D] [--retries N]
                                          D: a duration with its unit (2500ms, 3s, 1min)
  archive [--shop JID] [--visitor JID] [--agent JID] [--from T] [--to T] [--limit N]
          [--context TEXT] [--format json|csv]
                                          closed sessions with their transcripts, newest first, every
                                          page (T: ms or ISO date; --limit: at most N sessions;
                                          --context: text in the visitor context's names or values)
  archive <id>                            one archived session
  audit [--by NAME] [--target JID] [--from T] [--to T] [--limit N]
                                          the audit log of admin actions, newest first, every page
                                          (--by: the token's name; --target: a shop, agent, visitor
                                          or group it names; --limit: at most N entries)
  stats [--shop JID] [--from T] [--to T]  CSAT, first response, handle time, queue wait per shop and agent
  forget <visitor> [--account]            erase a visitor: live state, archive, journal, its offline messages
                                          and MAM archive in ejabberd (--account: its account too, for
                                          widget visitors); "complete": false says what to repeat
  export <visitor>                        everything kept about a visitor, as JSON
  import <config.json> [--dry-run] [--prune]
                                          bring shops and agents in line with a config file (which only
                                          seeds an empty store): prints each change, applies it unless
                                          --dry-run; --prune also removes shops and agents it lacks

Every number, duration, true|false and choice is checked before anything is sent: a wrong one
exits 2 naming the flag. --version prints the version.

The admin token is the first of (its role, in the sidecar's admin.tokens, decides what it may do;
every change is in the audit log under its name):
  1. --token TOKEN
  2. the environment variable CONSULT_ADMIN_TOKEN
  3. a token of the sidecar config named by CONSULT_CONFIG (e.g. /etc/consult-router/consult.json):
     admin.token, else the first of admin.tokens with role admin (token or tokenFile);
     --token-name NAME: the one of that name, whatever its role
  4. the file admin-token in scripts/run.sh's run directory: $CONSULT_RUN_DIR/admin-token
     (CONSULT_RUN_DIR defaults to .run in the checkout; run.sh makes the file on its first run)
The URL is the first of --url, CONSULT_ADMIN_URL, admin.host and admin.port of CONSULT_CONFIG's
config (with CONSULT_ADMIN_HOST and CONSULT_ADMIN_PORT over them, as the sidecar reads them), the
admin port in the run directory's consult.json (written by run.sh), and http://127.0.0.1:8088.`;

class UsageError extends Error {}
class BadSetting extends Error {}

const { values: opt, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        'token-name': { type: 'string' },
        'secret-file': { type: 'string' },
        messages: { type: 'string' },
        name: { type: 'string' },
        welcome: { type: 'string' },
        'no-agent-text': { type: 'string' },
        strategy: { type: 'string' },
        queue: { type: 'string' },
        max: { type: 'string' },
        shop: { type: 'string' },
        reason: { type: 'string' },
        agents: { type: 'string' },
        products: { type: 'string' },
        default: { type: 'string' },
        bot: { type: 'string' },
        'bot-url': { type: 'string' },
        'max-wait': { type: 'string' },
        group: { type: 'string' },
        tag: { type: 'string' },
        supervisors: { type: 'string' },
        timeout: { type: 'string' },
        retries: { type: 'string' },
        visitor: { type: 'string' },
        agent: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        limit: { type: 'string' },
        format: { type: 'string' },
        by: { type: 'string' },
        target: { type: 'string' },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        prune: { type: 'boolean' },
        account: { type: 'boolean' },
      },
    });
  } catch (e) {
    console.error(`consultctl: ${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();

const e = encodeURIComponent;
const need = (i: number, what: string) => {
  const v = positionals[i];
  if (!v) throw new UsageError(`missing ${what}`);
  return v;
};

/** A JSON file's content (the API checks its shape). */
function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message}`);
  }
}

/** The request a command line stands for. */
function request(): { method: string; path: string; body?: unknown } {
  const [cmd, sub] = positionals;
  switch (cmd) {
    case 'shops':
      return { method: 'GET', path: '/shops' };
    case 'shop':
      if (sub === 'set') {
        const body: Record<string, unknown> = {
          name: opt.name,
          welcome: opt.welcome,
          noAgentText: opt['no-agent-text'],
          strategy: opt.strategy,
          queueMaxWaitSec: opt['max-wait'] === undefined ? undefined : Number(opt['max-wait']),
          supervisors: opt.supervisors === undefined ? undefined : jidList(opt.supervisors),
        };
        if (opt.queue !== undefined) {
          if (opt.queue !== 'true' && opt.queue !== 'false') throw new UsageError('--queue must be true or false');
          body.queueEnabled = opt.queue === 'true';
        }
        return { method: 'PATCH', path: `/shops/${e(need(2, 'shop JID'))}`, body };
      }
      if (sub === 'rm') return { method: 'DELETE', path: `/shops/${e(need(2, 'shop JID'))}` };
      return { method: 'GET', path: `/shops/${e(need(1, 'shop JID'))}` };
    case 'agent':
      if (sub === 'add') {
        const body: Record<string, unknown> = {};
        if (opt.max !== undefined) body.maxSessions = Number(opt.max);
        return { method: 'PATCH', path: `/shops/${e(need(2, 'shop JID'))}/agents/${e(need(3, 'agent JID'))}`, body };
      }
      if (sub === 'rm') return { method: 'DELETE', path: `/shops/${e(need(2, 'shop JID'))}/agents/${e(need(3, 'agent JID'))}` };
      if (sub === 'status')
        return { method: 'PUT', path: `/agents/${e(need(2, 'agent JID'))}/status`, body: { status: need(3, 'status') } };
      return { method: 'GET', path: `/agents/${e(need(1, 'agent JID'))}` };
    case 'sessions':
      return { method: 'GET', path: opt.shop ? `/sessions?shop=${e(opt.shop)}` : '/sessions' };
    case 'close':
      return { method: 'POST', path: '/sessions/close', body: { shop: need(1, 'shop JID'), visitor: need(2, 'visitor JID') } };
    case 'transfer': {
      const to = need(3, 'target agent JID or #group');
      const target = to.startsWith('#') ? { toGroup: to.slice(1) } : { to };
      return {
        method: 'POST',
        path: '/sessions/transfer',
        body: { shop: need(1, 'shop JID'), visitor: need(2, 'visitor JID'), ...target, reason: opt.reason },
      };
    }
    case 'group':
      return groupRequest(sub);
    case 'canned':
      return cannedRequest(sub);
    case 'webhook':
      return webhookRequest(sub);
    case 'bot': {
      const mode = need(2, 'bot mode');
      const body: Record<string, unknown> = { mode, url: opt['bot-url'] };
      if (opt.timeout !== undefined) body.timeoutMs = Number(opt.timeout);
      if (opt.retries !== undefined) body.retries = Number(opt.retries);
      return { method: 'PATCH', path: `/shops/${e(need(1, 'shop JID'))}`, body: { bot: body } };
    }
    case 'archive':
      // Without an id: every page, by archivePages().
      return {
        method: 'GET',
        path: sub ? `/archive/${e(sub)}` : `/archive${query(['shop', 'visitor', 'agent', 'from', 'to', 'context', 'tag', 'format'])}`,
      };
    case 'stats':
      return { method: 'GET', path: `/stats${query(['shop', 'from', 'to', 'tag'])}` };
    case 'audit': {
      // Every page, by archivePages(); --by is the token's name (--token is the one to send).
      const q = new URLSearchParams(query(['target', 'from', 'to']));
      if (opt.by !== undefined) q.set('token', opt.by);
      return { method: 'GET', path: `/audit${q.size ? `?${q}` : ''}` };
    }
    case 'queue':
      return { method: 'GET', path: `/queue?shop=${e(need(1, 'shop JID'))}` };
    case 'left':
      if (sub === 'close')
        return { method: 'POST', path: '/left-messages/close', body: { shop: need(2, 'shop JID'), visitor: need(3, 'visitor JID') } };
      return { method: 'GET', path: `/left-messages?shop=${e(need(1, 'shop JID'))}` };
    case 'abandoned':
      return { method: 'GET', path: `/queue/abandoned?shop=${e(need(1, 'shop JID'))}` };
    case 'events':
      return { method: 'GET', path: `/events?shop=${e(need(1, 'shop JID'))}` };
    case 'forget':
      return { method: 'DELETE', path: `/visitors/${e(need(1, 'visitor JID'))}${opt.account ? '?account=true' : ''}` };
    case 'export':
      return { method: 'GET', path: `/visitors/${e(need(1, 'visitor JID'))}/export` };
    case 'hours': {
      const shop = need(1, 'shop JID');
      const file = need(2, 'hours file (JSON) or off');
      return { method: 'PATCH', path: `/shops/${e(shop)}`, body: { hours: file === 'off' ? null : readJson(file) } };
    }
    default:
      throw new UsageError(cmd ? `unknown command ${cmd}` : 'no command');
  }
}

/** The given options as a query string. */
function query(keys: (keyof typeof opt)[]): string {
  const q = new URLSearchParams();
  for (const k of keys) if (opt[k] !== undefined) q.set(k, String(opt[k]));
  return q.size ? `?${q}` : '';
}

/** `canned <shop>`, `canned set <shop> <name> <text…>`, `canned rm <shop> <name>`; --group: a group's replies. */
function cannedRequest(sub: string | undefined): { method: string; path: string; body?: unknown } {
  const group = query(['group']);
  if (sub !== 'set' && sub !== 'rm') return { method: 'GET', path: `/shops/${e(need(1, 'shop JID'))}/canned${group}` };
  const path = `/shops/${e(need(2, 'shop JID'))}/canned/${e(need(3, 'canned reply name'))}${group}`;
  if (sub === 'rm') return { method: 'DELETE', path };
  need(4, 'canned reply text');
  return { method: 'PUT', path, body: { text: positionals.slice(4).join(' ') } };
}

/**
 * `webhook <shop>`, `webhook set <shop> <url>` (the secret from --secret-file or CONSULT_WEBHOOK_SECRET, never an
 * argument: the process list would show it; left out, the shop's stays), `webhook off <shop>`, `webhook rm <shop>`.
 */
function webhookRequest(sub: string | undefined): { method: string; path: string; body?: unknown } {
  if (sub !== 'set' && sub !== 'off' && sub !== 'rm') return { method: 'GET', path: `/shops/${e(need(1, 'shop JID'))}/events` };
  const path = `/shops/${e(need(2, 'shop JID'))}/events`;
  if (sub === 'rm') return { method: 'DELETE', path };
  if (sub === 'off') return { method: 'PUT', path, body: { off: true } };
  const body: Record<string, unknown> = { url: need(3, 'webhook URL') };
  const file = opt['secret-file'];
  let secret = process.env.CONSULT_WEBHOOK_SECRET || undefined;
  if (file !== undefined) {
    try {
      secret = fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new BadSetting(`--secret-file: cannot read ${file}: ${(err as Error).message}`);
    }
  }
  if (secret !== undefined) body.secret = secret;
  if (opt.messages !== undefined) body.messages = opt.messages === 'true';
  if (opt.timeout !== undefined) body.timeoutMs = Number(opt.timeout);
  return { method: 'PUT', path, body };
}

function groupRequest(sub: string | undefined): { method: string; path: string; body?: unknown } {
  const path = `/shops/${e(need(2, 'shop JID'))}/groups/${e(need(3, 'group name'))}`;
  if (sub === 'rm') return { method: 'DELETE', path };
  if (sub !== 'set') throw new UsageError('group set|rm <shop> <name>');
  const list = (v: string | undefined) => (v === undefined ? undefined : v.split(',').filter(Boolean));
  const body: Record<string, unknown> = { agents: list(opt.agents), products: list(opt.products), strategy: opt.strategy, bot: opt.bot };
  if (opt.default !== undefined) {
    if (opt.default !== 'true' && opt.default !== 'false') throw new UsageError('--default must be true or false');
    body.isDefault = opt.default === 'true';
  }
  if (opt.max !== undefined) body.maxSessions = Number(opt.max);
  return { method: 'PUT', path, body };
}

class Unreachable extends Error {}

/** One admin API call: the status and the parsed body (text when not JSON). */
async function call(
  base: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ ok: boolean; status: number; data: unknown; headers: Headers }> {
  let res: Response;
  try {
    res = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new Unreachable(`cannot reach ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
  const text = await res.text();
  let data: unknown = text;
  try {
    data = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { ok: res.ok, status: res.status, data, headers: res.headers };
}

/** scripts/run.sh's run directory: CONSULT_RUN_DIR, else .run in the checkout (src/ and dist/ are one level down). */
const runDir = () =>
  process.env.CONSULT_RUN_DIR
    ? path.resolve(process.env.CONSULT_RUN_DIR)
    : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.run');

function fromRunDir<T>(file: string, read: (text: string) => T | undefined): { value: T; file: string } | undefined {
  const f = path.join(runDir(), file);
  let text: string;
  try {
    text = fs.readFileSync(f, 'utf8');
  } catch {
    return undefined;
  }
  const value = read(text);
  return value === undefined ? undefined : { value, file: f };
}

/** The sidecar config CONSULT_CONFIG names, read as the sidecar reads it (CONSULT_ADMIN_* over the file). */
let sidecarConfig: Config | undefined;
function fromSidecarConfig(): Config | undefined {
  const file = process.env.CONSULT_CONFIG;
  if (!file) return undefined;
  try {
    sidecarConfig ??= loadConfig(file, outsideOverrides(process.env), 'CONSULT_CONFIG');
  } catch (err) {
    if (err instanceof ConfigError) throw new BadSetting(`${err.message} (CONSULT_CONFIG=${file})`);
    throw err;
  }
  return sidecarConfig;
}

/** An address the sidecar listens on, as one to connect to (a wildcard: this machine). */
const reachable = (host: string) => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host);

/** The admin API's URL: --url, CONSULT_ADMIN_URL, CONSULT_CONFIG's admin, the run directory's consult.json, the default. */
function adminUrl(): string {
  const given = opt.url ?? process.env.CONSULT_ADMIN_URL;
  const admin = given ? undefined : fromSidecarConfig()?.admin;
  const url =
    given ??
    (admin ? `http://${reachable(admin.host)}:${admin.port}` : undefined) ??
    fromRunDir('consult.json', (text) => {
      try {
        const admin = (JSON.parse(text) as { admin?: { host?: string; port?: number } }).admin;
        return admin?.port ? `http://${admin.host ?? '127.0.0.1'}:${admin.port}` : undefined;
      } catch {
        return undefined;
      }
    })?.value ??
    'http://127.0.0.1:8088';
  return url.replace(/\/+$/, '');
}

/**
 * The admin token: --token, CONSULT_ADMIN_TOKEN, CONSULT_CONFIG's admin tokens (admin.token, else the first of
 * admin.tokens with role admin; --token-name: the one of that name), the run directory's admin-token file.
 */
function adminToken(): string | undefined {
  if (opt.token === undefined && opt['token-name'] !== undefined) return configToken(); // asked for by name: that one
  return (
    opt.token ??
    (process.env.CONSULT_ADMIN_TOKEN || undefined) ??
    configToken() ??
    fromRunDir('admin-token', (t) => t.trim() || undefined)?.value
  );
}

/** A token of CONSULT_CONFIG (admin.token is there as the token named admin); one given only by its SHA-256 cannot be sent. */
function configToken(): string | undefined {
  const config = fromSidecarConfig();
  if (!config) {
    if (opt['token-name'] !== undefined) throw new UsageError('--token-name needs CONSULT_CONFIG (the sidecar config naming the token)');
    return undefined;
  }
  const { tokens } = config.admin;
  const named = opt['token-name'];
  const chosen = named === undefined ? tokens.find((t) => t.role === 'admin') : tokens.find((t) => t.name === named);
  if (!chosen) {
    if (named === undefined) return undefined;
    throw new BadSetting(`CONSULT_CONFIG has no admin token named ${named} (it has: ${tokens.map((t) => t.name).join(', ') || 'none'})`);
  }
  if (chosen.sha256 !== undefined)
    throw new BadSetting(`admin token ${chosen.name} of CONSULT_CONFIG is given only by its sha256: pass the token itself with --token`);
  try {
    return readAdminTokens([chosen]).map((t) => ('token' in t ? t.token : undefined))[0];
  } catch (err) {
    if (err instanceof ConfigError) throw new BadSetting(`${err.message} (CONSULT_CONFIG=${process.env.CONSULT_CONFIG})`);
    throw err;
  }
}

/** An RFC 9457 problem's detail (which names the fields at fault), else the text. */
const errorText = (data: unknown) =>
  typeof data === 'object' && data && 'detail' in data ? String((data as { detail: unknown }).detail) : String(data);

const PAGE = 1000; // the admin API's largest archive page

/**
 * `archive` without an id (and `audit`): the pages of GET /archive (GET /audit) followed through their Link rel="next"
 * until the last (or --limit items), printed as one JSON array or one CSV.
 */
async function archivePages(base: string, token: string, first: string): Promise<number> {
  const want = opt.limit === undefined ? Number.POSITIVE_INFINITY : Number(opt.limit);
  if (opt.limit !== undefined && !(Number.isInteger(want) && want >= 1)) throw new UsageError('--limit must be a positive integer');
  const csv = opt.format === 'csv';
  const records: unknown[] = [];
  let text = '';
  let got = 0;
  let next: string | undefined = first;
  while (next !== undefined && got < want) {
    const url = new URL(next, 'http://admin');
    const limit = Math.min(PAGE, want - got);
    url.searchParams.set('limit', String(limit));
    const res = await call(base, token, 'GET', `${url.pathname}${url.search}`);
    if (!res.ok) {
      console.error(`consultctl: ${res.status} ${errorText(res.data)}`);
      return 1;
    }
    if (csv) {
      // Each page starts with the header row; a page followed by another one was full.
      const page = String(res.data);
      text += text ? page.slice(page.indexOf('\r\n') + 2) : page;
      got += limit;
    } else {
      const page = res.data as { items: unknown[] };
      records.push(...page.items);
      got += page.items.length;
    }
    next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
  }
  if (csv) process.stdout.write(text);
  else console.log(JSON.stringify(records, null, 2));
  return 0;
}

/** `import`: the plan against GET /shops, printed, then applied step by step unless --dry-run. */
async function importConfig(base: string, token: string): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(need(1, 'config file'));
  } catch (err) {
    if (err instanceof ConfigError) throw new BadSetting(err.message);
    throw err;
  }
  const current = await call(base, token, 'GET', '/shops');
  if (!current.ok) {
    console.error(`consultctl: ${current.status} ${errorText(current.data)}`);
    return 1;
  }
  const steps = planImport(config, current.data as ShopView[], opt.prune);
  if (steps.length === 0) console.log('nothing to change');
  for (const step of steps) {
    console.log(step.say);
    if (opt['dry-run']) continue;
    const r = await call(base, token, step.method, step.path, step.body);
    if (!r.ok) {
      console.error(`consultctl: ${r.status} ${errorText(r.data)} (while: ${step.say})`);
      return 1;
    }
  }
  if (opt['dry-run'] && steps.length) console.log(`(dry run: ${steps.length} change${steps.length > 1 ? 's' : ''} not applied)`);
  return 0;
}

async function main(): Promise<number> {
  if (opt.help || positionals[0] === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (opt.version) {
    console.log(packageVersion());
    return 0;
  }
  try {
    checkValues(opt, positionals);
    const req = positionals[0] === 'import' ? undefined : request();
    const base = adminUrl();
    const token = adminToken();
    if (!token) {
      console.error(
        `consultctl: no admin token: pass --token, set CONSULT_ADMIN_TOKEN or CONSULT_CONFIG, or run scripts/run.sh (it writes ${path.join(runDir(), 'admin-token')})`,
      );
      return 2;
    }
    if (!req) return await importConfig(base, token);
    if ((positionals[0] === 'archive' && !positionals[1]) || positionals[0] === 'audit') return await archivePages(base, token, req.path);
    const res = await call(base, token, req.method, req.path, req.body);
    if (!res.ok) {
      console.error(`consultctl: ${res.status} ${errorText(res.data)}`);
      return 1;
    }
    if (typeof res.data === 'string')
      process.stdout.write(res.data); // the CSV export
    else console.log(JSON.stringify(res.data, null, 2));
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`consultctl: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof BadValue || err instanceof BadSetting) {
      console.error(`consultctl: ${err.message}`);
      return 2;
    }
    if (err instanceof Unreachable) {
      console.error(`consultctl: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

main().then(
  // stdout to a pipe is written asynchronously: exit once a long answer (an archive export) is out.
  (code) => process.stdout.write('', () => process.exit(code)),
  (err) => {
    console.error(`consultctl: ${(err as Error).message}`);
    process.exit(1);
  },
);

/** A comma-separated list of JIDs ('' : none). */
function jidList(text: string): string[] {
  return text
    .split(',')
    .map((j) => j.trim())
    .filter(Boolean);
}
