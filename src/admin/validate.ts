// Admin input through its zod schema: a 400 problem naming every field at fault, in words an operator reads
// ("limits.queueMax must be an integer in 1..1000000"). Schemas may carry their own messages; these are the rest.
import type { z } from 'zod';
import { type FieldProblem, invalid } from './problem.js';

type Issue = z.core.$ZodRawIssue;

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

/** The sentence after the field's name: "must be ...", "is required". */
function words(iss: Issue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      return iss.input === undefined ? 'is required' : `must be ${TYPE_WORDS[iss.expected] ?? iss.expected}`;
    case 'too_small':
    case 'too_big': {
      const small = iss.code === 'too_small';
      const bound = Number(small ? iss.minimum : iss.maximum);
      if (iss.origin === 'string' && small && bound === 1) return 'must be a non-empty string';
      const than = iss.inclusive === false ? (small ? 'more than' : 'less than') : small ? 'at least' : 'at most';
      if (iss.origin === 'string') return `must be ${than} ${bound} characters long`;
      if (iss.origin === 'array' || iss.origin === 'set') return `must have ${than} ${bound} items`;
      return `must be ${than} ${bound}`;
    }
    case 'invalid_value':
      return iss.values.length === 1 ? `must be ${JSON.stringify(iss.values[0])}` : `must be one of ${iss.values.join(', ')}`;
    case 'invalid_format':
      return iss.format === 'regex' ? 'is not in the expected form' : `must be ${iss.format === 'url' ? 'a URL' : `a ${iss.format}`}`;
    case 'unrecognized_keys':
      return 'is not a known field';
    case 'invalid_union':
      return 'matches none of the forms it may take';
    default:
      return undefined;
  }
}

const fieldOf = (path: PropertyKey[]) =>
  path.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), '');
const pointerOf = (path: PropertyKey[]) =>
  `#/${path.map((k) => encodeURIComponent(String(k).replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`;

function problems(error: z.ZodError, where: FieldProblem['in'], prefix: PropertyKey[]): FieldProblem[] {
  const out: FieldProblem[] = [];
  const add = (at: PropertyKey[], detail: string) => {
    const path = [...prefix, ...at];
    out.push({ in: where, field: fieldOf(path), ...(where === 'body' ? { pointer: pointerOf(path) } : {}), detail });
  };
  for (const iss of error.issues) {
    if (iss.code === 'unrecognized_keys') for (const k of iss.keys) add([...iss.path, k], iss.message);
    else add(iss.path, iss.message);
  }
  return out;
}

/** The parsed value, or a 400 problem listing what is wrong where (`prefix`: where the value sits in the body). */
export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: FieldProblem['in'],
  prefix: PropertyKey[] = [],
): z.output<S> {
  const r = schema.safeParse(value, { error: (iss) => words(iss) });
  if (r.success) return r.data;
  throw invalid(problems(r.error, where, prefix));
}
