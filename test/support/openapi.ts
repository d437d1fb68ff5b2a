// Checks real admin API answers against its OpenAPI document: the status documented for the operation, the media type
// documented for that status, and a JSON body valid against the documented schema (JSON Schema 2020-12, with ajv,
// which @seriousme/openapi-schema-validator is built on).
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';

// biome-ignore lint/suspicious/noExplicitAny: the document is walked by whatever keys it has
type Json = Record<string, any>;

export interface Answer {
  status: number;
  type: string | null;
  text: string;
}

export class ApiContract {
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true });
  private readonly compiled = new Map<object, ValidateFunction>();

  private constructor(
    readonly document: Json,
    private readonly resolved: Json,
  ) {}

  /** The document validated as OpenAPI (3.1 by its own `openapi` field); throws with the validator's errors. */
  static async of(document: Json): Promise<ApiContract> {
    const validator = new Validator();
    const result = await validator.validate(document);
    if (!result.valid) throw new Error(`not a valid OpenAPI document: ${JSON.stringify(result.errors, null, 2)}`);
    return new ApiContract(document, validator.resolveRefs() as Json);
  }

  /** Every operation as "METHOD /path/{template}". */
  operations(): string[] {
    return Object.entries(this.document.paths as Json).flatMap(([path, item]) =>
      Object.keys(item as Json).map((method) => `${method.toUpperCase()} ${path}`),
    );
  }

  /** What is wrong with an answer of `METHOD template` by the document; [] when it is what the document says. */
  check(method: string, template: string, answer: Answer): string[] {
    const op = this.resolved.paths?.[template]?.[method.toLowerCase()];
    if (!op) return [`${method} ${template} is not in the document`];
    const response = op.responses?.[String(answer.status)];
    if (!response) return [`status ${answer.status} is not documented for ${method} ${template} (${answer.text.slice(0, 200)})`];
    const media = (answer.type ?? '').split(';')[0].trim();
    const content = response.content?.[media];
    if (!content) return [`${media || 'no content type'} is not documented for ${answer.status} of ${method} ${template}`];
    if (!/json$/.test(media)) return [];
    let body: unknown;
    try {
      body = JSON.parse(answer.text);
    } catch {
      return [`the ${media} body of ${answer.status} is not JSON`];
    }
    let validate = this.compiled.get(content.schema);
    if (!validate) this.compiled.set(content.schema, (validate = this.ajv.compile(content.schema)));
    if (validate(body)) return [];
    return (validate.errors ?? []).map((e) => `${answer.status} of ${method} ${template}: ${e.instancePath || '/'} ${e.message}`);
  }
}
