// Dispatch from the route table: a path template matched against the request, 405 with Allow when the path is known
// but not the method, then the path parameters, query and body validated with the route's schemas before its handler
// runs. Authentication, roles and the audit log are the caller's (src/admin/http.ts), between match() and input().
import type { IncomingMessage } from 'node:http';
import { HttpError } from './problem.js';
import type { AuditNote, Method, Route } from './routes.js';
import { validate } from './validate.js';

const MAX_BODY = 1 << 20;

interface Compiled {
  route: Route;
  re: RegExp;
  names: string[];
}

export type Match = { route: Route; params: Record<string, string> };
export type Input = { params: unknown; query: unknown; body: unknown };

/** An audit note nobody reads (a route that is not audited). */
export const UNHEARD: AuditNote = { before: () => {}, after: () => {} };

function compile(route: Route): Compiled {
  const names: string[] = [];
  const source = route.path
    .split('/')
    .map((seg) => {
      const m = /^\{(\w+)\}$/.exec(seg);
      if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      names.push(m[1]);
      return '([^/]+)';
    })
    .join('/');
  return { route, re: new RegExp(`^${source}$`), names };
}

export class Router {
  private readonly compiled: Compiled[];

  constructor(readonly routes: readonly Route[]) {
    const seen = new Set<string>();
    for (const r of routes) {
      const key = `${r.method} ${r.path.replace(/\{\w+\}/g, '{}')}`;
      if (seen.has(key)) throw new Error(`admin route ${key} is in the table twice`);
      seen.add(key);
    }
    this.compiled = routes.map(compile);
  }

  /** The route and its raw (decoded) path parameters; a 404 or 405 (with Allow) problem when there is none. */
  match(method: string, pathname: string): Match {
    const allow: Method[] = [];
    for (const c of this.compiled) {
      const m = c.re.exec(pathname);
      if (!m) continue;
      if (c.route.method !== method) {
        allow.push(c.route.method);
        continue;
      }
      const params: Record<string, string> = {};
      try {
        c.names.forEach((n, i) => {
          params[n] = decodeURIComponent(m[i + 1]);
        });
      } catch {
        throw new HttpError(400, 'the path is not valid percent-encoding');
      }
      return { route: c.route, params };
    }
    if (allow.length)
      throw new HttpError(
        405,
        `${method} is not allowed on ${pathname}; it allows ${allow.join(', ')}`,
        undefined,
        {},
        { allow: allow.join(', ') },
      );
    throw new HttpError(404, `no route ${pathname}`);
  }

  /** The request's input validated against the route's schemas. */
  async input({ route, params }: Match, query: URLSearchParams, req: IncomingMessage): Promise<Input> {
    return {
      params: route.params ? validate(route.params, params, 'path') : undefined,
      query: route.query ? validate(route.query, Object.fromEntries(query), 'query') : undefined,
      body: route.body ? validate(route.body, await readBody(req), 'body') : undefined,
    };
  }

  /** Validates the request's input and runs the route's handler (what it tells the audit log goes to `audit`). */
  async run(match: Match, query: URLSearchParams, req: IncomingMessage, audit: AuditNote = UNHEARD): Promise<unknown> {
    return match.route.handle({ ...(await this.input(match, query, req)), audit });
  }
}

/** The JSON body; an empty one is {}. */
async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BODY) throw new HttpError(413, 'the body is larger than 1 MiB');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'the body must be valid JSON');
  }
}
