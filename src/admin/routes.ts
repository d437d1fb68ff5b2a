// What an admin route is: one row of the table the router dispatches from and the OpenAPI document is built from
// (src/admin/router.ts, src/admin/openapi.ts), so a route cannot exist without being documented. Its input is
// validated with the same zod schemas the document shows.
import type { z } from 'zod';
import type { Role } from '../domain/audit.js';

export type Method = 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE';

/** Who may call a route: anyone, or a client with an admin bearer token (whose role must allow the route's `role`). */
export type Access = 'public' | 'admin';

/**
 * What a handler tells the audit log about the change it makes (src/admin/audit.ts): the resource before it (null: it
 * did not exist) and after it (by default the JSON answer; null: it is gone).
 */
export interface AuditNote {
  before(value: unknown): void;
  after(value: unknown): void;
}

/** A response that is not JSON (the CSV export, Prometheus text): its media type (with parameters) and body. */
export class Raw {
  constructor(
    readonly type: string,
    readonly body: string,
    readonly headers: Record<string, string> = {},
  ) {}
}

/** A JSON answer with headers of its own (e.g. Link on a page of the archive). */
export class WithHeaders<T> {
  constructor(
    readonly body: T,
    readonly headers: Record<string, string>,
  ) {}
}

type Obj = z.ZodObject;
type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface RouteSpec<P extends Obj | undefined, Q extends Obj | undefined, B extends z.ZodType | undefined, R extends z.ZodType> {
  method: Method;
  /** An OpenAPI path template: /shops/{shop}/agents/{agent}. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  access: Access;
  /**
   * The least role a token needs (access admin): by default read for GET, admin for the rest; operator for the day's
   * work on sessions and agents. Every route with a token but GET is audited.
   */
  role?: Role;
  /** A GET that is audited too (a visitor's data exported). */
  audited?: boolean;
  params?: P;
  query?: Q;
  body?: B;
  /** The 200 answer: JSON of `json`, and other media types the route may answer instead (CSV). */
  ok: {
    description: string;
    json?: R;
    other?: { type: string; description: string }[];
    /** Headers of the 200 answer, as OpenAPI header objects. */
    headers?: Record<string, { description: string; schema: Record<string, unknown> }>;
  };
  /** Problem statuses of this route besides those every route has (400 with input, 401 and 429 for admin, 500). */
  problems?: number[];
  handle(input: { params: Out<P>; query: Out<Q>; body: Out<B>; audit: AuditNote }): Promise<z.input<R> | Raw | WithHeaders<z.input<R>>>;
}

/** A row of the table with its types erased (the router and the document only read it). */
export type Route = Omit<RouteSpec<Obj | undefined, Obj | undefined, z.ZodType | undefined, z.ZodType>, 'handle' | 'role'> & {
  /** Set on every route with a token (route() fills in the default). */
  role?: Role;
  handle(input: { params: unknown; query: unknown; body: unknown; audit: AuditNote }): Promise<unknown>;
};

/** Whether a call of the route is written to the audit log: every change made with a token, and audited reads. */
export const isAudited = (r: Route) => r.access === 'admin' && (r.method !== 'GET' || r.audited === true);

/** A route with its handler typed from its schemas. */
export function route<P extends Obj | undefined, Q extends Obj | undefined, B extends z.ZodType | undefined, R extends z.ZodType>(
  spec: RouteSpec<P, Q, B, R>,
): Route {
  if (spec.access === 'public') return spec as unknown as Route;
  return { ...spec, role: spec.role ?? (spec.method === 'GET' ? 'read' : 'admin') } as unknown as Route;
}

/** The routes of one tag that take the admin token: `route` with those two fields said once for the whole group. */
export function adminRoute(tag: string) {
  return <P extends Obj | undefined, Q extends Obj | undefined, B extends z.ZodType | undefined, R extends z.ZodType>(
    spec: Omit<RouteSpec<P, Q, B, R>, 'tag' | 'access'>,
  ): Route => route({ ...spec, tag, access: 'admin' });
}

/** The problems of a route over a shop decided here: no such shop, another sidecar decides it (421), no store (503). */
export const DECIDED_HERE_PROBLEMS = [404, 421, 503];
