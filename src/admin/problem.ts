// Every admin API error is an RFC 9457 problem (application/problem+json): a type URI, a title per type, the HTTP
// status, a detail for this occurrence, and for invalid input the fields at fault. The types are URNs: they name the
// kind of problem and are not meant to be fetched (docs/admin-api.md lists them).
import { STATUS_CODES } from 'node:http';
import { z } from 'zod';

export const PROBLEM_TYPES = {
  /** 400: the path, query or body did not validate; `errors` says where and why. */
  validation: { type: 'urn:consult:problem:validation', title: 'The request is not valid' },
  /** 403: the token is known, but its role does not allow the route (a read token asked to change something). */
  forbidden: { type: 'urn:consult:problem:forbidden', title: 'The token’s role does not allow this' },
  /** 503: the audit log cannot be written, so the change was not made. */
  auditUnavailable: { type: 'urn:consult:problem:audit-unavailable', title: 'The audit log cannot be written' },
  /** 409: the desk refused the action (an agent without room, a shop with open sessions...). */
  refused: { type: 'urn:consult:problem:refused', title: 'The action was refused' },
  /** 421: the shop is decided by another sidecar; `owner` names it when the lease says who. */
  notDecidedHere: { type: 'urn:consult:problem:not-decided-here', title: 'Another sidecar decides this shop' },
  /** 503: the database does not answer, so no shop is decided here right now. */
  storeUnreachable: { type: 'urn:consult:problem:store-unreachable', title: 'The sidecar cannot reach its database' },
} as const;

export const MEDIA_PROBLEM = 'application/problem+json';

export const FieldProblemSchema = z
  .object({
    in: z.enum(['path', 'query', 'body']),
    field: z.string().meta({ description: 'the field as dotted keys and [index]es, e.g. groups[1].agents; "" for the whole body' }),
    pointer: z.string().optional().meta({ description: 'JSON Pointer (RFC 6901) to the field in the body, as a URI fragment' }),
    detail: z.string(),
  })
  .meta({ description: 'one field at fault' });
export type FieldProblem = z.infer<typeof FieldProblemSchema>;

export const ShopOwnerSchema = z.object({
  sidecar: z.string().meta({ description: 'the id of the sidecar holding the shop’s lease' }),
  adminUrl: z.string().optional().meta({ description: 'that sidecar’s admin API, when known' }),
});
export type ShopOwner = z.infer<typeof ShopOwnerSchema>;

export const ProblemSchema = z
  .object({
    type: z.string().meta({
      description: `about:blank, or one of ${Object.values(PROBLEM_TYPES)
        .map((p) => p.type)
        .join(', ')}`,
    }),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    errors: z.array(FieldProblemSchema).optional().meta({ description: 'validation problems: every field at fault' }),
    owner: ShopOwnerSchema.optional().meta({ description: '421: the sidecar that decides the shop, when known' }),
  })
  .meta({ description: 'RFC 9457 problem details' });
export type Problem = z.infer<typeof ProblemSchema>;

/** An error answered as a problem; without a type it is about:blank titled with the status's reason phrase. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    detail: string,
    readonly kind?: (typeof PROBLEM_TYPES)[keyof typeof PROBLEM_TYPES],
    readonly extra: Pick<Problem, 'errors' | 'owner'> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }

  problem(): Problem {
    return {
      type: this.kind?.type ?? 'about:blank',
      title: this.kind?.title ?? STATUS_CODES[this.status] ?? 'Error',
      status: this.status,
      detail: this.message,
      ...this.extra,
    };
  }
}

/** 400 naming the fields: the detail reads as one sentence per field ("limits.queueMax must be ..."). */
export function invalid(errors: FieldProblem[]): HttpError {
  const detail = errors.map((e) => (e.field ? `${e.field} ${e.detail}` : e.detail)).join('; ');
  return new HttpError(400, detail, PROBLEM_TYPES.validation, { errors });
}

/** One field's problem, for checks the schemas cannot make (a group naming an agent not in the shop). */
export const badField = (where: FieldProblem['in'], field: string, detail: string) => invalid([{ in: where, field, detail }]);
