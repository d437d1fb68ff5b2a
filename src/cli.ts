#!/usr/bin/env node
// consultctl: the admin HTTP API from a shell. `npm run consultctl -- help` (or `node dist/cli.js --help`).
import { parseArgs } from 'node:util';

const USAGE = `usage: consultctl [--url URL] [--token TOKEN] <command>

  shops                                   list shops with their agents
  shop <jid>                              show one shop
  shop set <jid> [--name N] [--welcome W] [--no-agent-text T]
                 [--strategy sticky|least-busy|round-robin|random] [--queue true|false]
  shop rm <jid>
  agent <jid>                             status, shops and online resources
  agent add <shop> <agent> [--max N]      add or update a membership
  agent rm <shop> <agent>
  agent status <jid> standard|dnd|always-on
  sessions [--shop JID]
  close <shop> <visitor>
  transfer <shop> <visitor> <to> [--reason TEXT]
  queue <shop>

URL and token come from --url/--token or CONSULT_ADMIN_URL/CONSULT_ADMIN_TOKEN
(default URL http://127.0.0.1:8088).`;

class UsageError extends Error {}

const { values: opt, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        url: { type: 'string' }, token: { type: 'string' }, name: { type: 'string' }, welcome: { type: 'string' },
        'no-agent-text': { type: 'string' }, strategy: { type: 'string' }, queue: { type: 'string' }, max: { type: 'string' },
        shop: { type: 'string' }, reason: { type: 'string' }, help: { type: 'boolean', short: 'h' },
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

/** The request a command line stands for. */
function request(): { method: string; path: string; body?: unknown } {
  const [cmd, sub] = positionals;
  switch (cmd) {
    case 'shops': return { method: 'GET', path: '/shops' };
    case 'shop':
      if (sub === 'set') {
        const body: Record<string, unknown> = { name: opt.name, welcome: opt.welcome, noAgentText: opt['no-agent-text'], strategy: opt.strategy };
        if (opt.queue !== undefined) {
          if (opt.queue !== 'true' && opt.queue !== 'false') throw new UsageError('--queue must be true or false');
          body.queueEnabled = opt.queue === 'true';
        }
        return { method: 'PUT', path: `/shops/${e(need(2, 'shop JID'))}`, body };
      }
      if (sub === 'rm') return { method: 'DELETE', path: `/shops/${e(need(2, 'shop JID'))}` };
      return { method: 'GET', path: `/shops/${e(need(1, 'shop JID'))}` };
    case 'agent':
      if (sub === 'add') {
        const body: Record<string, unknown> = {};
        if (opt.max !== undefined) body.maxSessions = Number(opt.max);
        return { method: 'PUT', path: `/shops/${e(need(2, 'shop JID'))}/agents/${e(need(3, 'agent JID'))}`, body };
      }
      if (sub === 'rm') return { method: 'DELETE', path: `/shops/${e(need(2, 'shop JID'))}/agents/${e(need(3, 'agent JID'))}` };
      if (sub === 'status') return { method: 'PUT', path: `/agents/${e(need(2, 'agent JID'))}/status`, body: { status: need(3, 'status') } };
      return { method: 'GET', path: `/agents/${e(need(1, 'agent JID'))}` };
    case 'sessions': return { method: 'GET', path: opt.shop ? `/sessions?shop=${e(opt.shop)}` : '/sessions' };
    case 'close': return { method: 'POST', path: '/sessions/close', body: { shop: need(1, 'shop JID'), visitor: need(2, 'visitor JID') } };
    case 'transfer':
      return { method: 'POST', path: '/sessions/transfer', body: { shop: need(1, 'shop JID'), visitor: need(2, 'visitor JID'), to: need(3, 'target agent JID'), reason: opt.reason } };
    case 'queue': return { method: 'GET', path: `/queue?shop=${e(need(1, 'shop JID'))}` };
    default: throw new UsageError(cmd ? `unknown command ${cmd}` : 'no command');
  }
}

async function main(): Promise<number> {
  if (opt.help || positionals[0] === 'help') {
    console.log(USAGE);
    return 0;
  }
  let req;
  try {
    req = request();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`consultctl: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  const base = (opt.url ?? process.env.CONSULT_ADMIN_URL ?? 'http://127.0.0.1:8088').replace(/\/+$/, '');
  const token = opt.token ?? process.env.CONSULT_ADMIN_TOKEN;
  if (!token) {
    console.error('consultctl: no admin token: pass --token or set CONSULT_ADMIN_TOKEN');
    return 2;
  }
  let res: Response;
  try {
    res = await fetch(base + req.path, {
      method: req.method,
      headers: { authorization: `Bearer ${token}`, ...(req.body ? { 'content-type': 'application/json' } : {}) },
      body: req.body ? JSON.stringify(req.body) : undefined,
    });
  } catch (err) {
    console.error(`consultctl: cannot reach ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
    return 1;
  }
  const text = await res.text();
  let data: unknown = text;
  try {
    data = JSON.parse(text);
  } catch { /* not JSON: print as is */ }
  if (!res.ok) {
    const msg = typeof data === 'object' && data && 'error' in data ? (data as { error: string }).error : text;
    console.error(`consultctl: ${res.status} ${msg}`);
    return 1;
  }
  console.log(JSON.stringify(data, null, 2));
  return 0;
}

main().then((code) => process.exit(code), (err) => {
  console.error(`consultctl: ${(err as Error).message}`);
  process.exit(1);
});
