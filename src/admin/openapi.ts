// The OpenAPI 3.1 document of the admin API, built from the route table (src/admin/routes.ts): every route with its
// parameters, body and answers as JSON Schema 2020-12 (OpenAPI 3.1's dialect), from the zod schemas that validate them.
import { STATUS_CODES } from 'node:http';
import { z } from 'zod';
import { MEDIA_PROBLEM, ProblemSchema } from './problem.js';
import { isAudited, type Route } from './routes.js';

type Json = Record<string, unknown>;

/** JSON Schema of what a route accepts (io input: defaults optional) or answers (io output). */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Json;
  return rest;
}

/**
 * The problems a route may answer: its own, 400 when it takes input, 401 and 429 when it needs a token, 403 when it
 * needs more than the read role, 503 when it is audited (the audit log cannot be written), 500.
 */
export function problemStatuses(r: Route): number[] {
  const s = new Set(r.problems ?? []);
  if (r.params || r.query || r.body) s.add(400);
  if (r.access === 'admin') {
    s.add(401);
    s.add(429);
    if (r.role !== 'read') s.add(403);
  }
  if (isAudited(r)) s.add(503);
  s.add(500);
  return [...s].sort((a, b) => a - b);
}

/** Headers an answer of this status carries (documented for each operation). */
const PROBLEM_HEADERS: Record<number, Json> = {
  401: { 'WWW-Authenticate': { description: 'Bearer', schema: { type: 'string' } } },
  429: { 'Retry-After': { description: 'seconds until this address may try again', schema: { type: 'integer' } } },
  503: { 'Retry-After': { description: 'seconds to wait before trying again', schema: { type: 'integer' } } },
};

/** A parameter that may be left out (optional, or with a default). */
const isOptional = (s: z.ZodType) => s.safeParse(undefined).success;

function parameters(where: 'path' | 'query', obj: z.ZodObject | undefined): Json[] {
  return Object.entries(obj?.shape ?? {}).map(([name, s]) => {
    const schema = jsonSchema(s as z.ZodType, 'input');
    return {
      name,
      in: where,
      required: where === 'path' || !isOptional(s as z.ZodType),
      ...(typeof schema.description === 'string' ? { description: schema.description } : {}),
      schema,
    };
  });
}

function operation(r: Route): Json {
  const content: Json = {};
  if (r.ok.json) content['application/json'] = { schema: jsonSchema(r.ok.json, 'output') };
  for (const o of r.ok.other ?? []) content[o.type] = { schema: { type: 'string', description: o.description } };
  const responses: Json = { 200: { description: r.ok.description, content, ...(r.ok.headers ? { headers: r.ok.headers } : {}) } };
  for (const status of problemStatuses(r))
    responses[status] = {
      description: STATUS_CODES[status] ?? 'Error',
      ...(PROBLEM_HEADERS[status] ? { headers: PROBLEM_HEADERS[status] } : {}),
      content: { [MEDIA_PROBLEM]: { schema: { $ref: '#/components/schemas/Problem' } } },
    };
  const params = [...parameters('path', r.params), ...parameters('query', r.query)];
  return {
    operationId: r.operationId,
    summary: r.summary,
    ...(r.description ? { description: r.description } : {}),
    tags: [r.tag],
    security: r.access === 'admin' ? [{ bearer: [] }] : [],
    // The least role of the token (read < operator < admin), and whether a call is written to the audit log.
    ...(r.access === 'admin' ? { 'x-role': r.role, 'x-audited': isAudited(r) } : {}),
    ...(params.length ? { parameters: params } : {}),
    ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(r.body, 'input') } } } } : {}),
    responses,
  };
}

export function openApiDocument(routes: readonly Route[]): Json {
  const paths: Record<string, Json> = {};
  for (const r of routes) (paths[r.path] ??= {})[r.method.toLowerCase()] = operation(r);
  return {
    openapi: '3.1.1',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'consult-router admin API',
      version: '1',
      description:
        'Shops, agents, sessions and the archive of one consult sidecar. Errors are RFC 9457 problems (application/problem+json). ' +
        'Routes marked with bearer need an admin token (config admin.tokens, admin.token) as `Authorization: Bearer <token>`, ' +
        'whose role is at least the operation’s x-role (read < operator < admin; else 403). Operations with x-audited are ' +
        'written to the audit log (GET /audit) before they answer (503 when it cannot be written: nothing is done).',
    },
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an admin token (config admin.tokens, admin.token)' } },
      schemas: { Problem: jsonSchema(ProblemSchema, 'output') },
    },
  };
}
