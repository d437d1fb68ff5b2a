// Visitor context: what a visitor's client says about the visitor with a consult (name, e-mail, phone, the page it
// is on, an order id, free key/value fields). It comes as a child in our namespace and/or as keys of `channelid`
// beside `pid`; it is kept with the session (later messages update it), given to the agent, listed by `/sessions`
// and archived. Everything here is pure: parse, validate, bound, merge, and render for people.
//   <context xmlns='urn:xmpp:consult:context:0'><name>Ann</name><email>ann@example.com</email><phone>+1 555 0100</phone>
//     <page>https://shop.example/cart</page><order>A-1001</order><field var='plan'>gold</field></context>
//   channelid='{"cn":"consult","d":"send","usrType":"usr","pid":"p1","name":"Ann","fields":{"plan":"gold"}}'
// An empty value removes what was known. A part that is invalid or past the bounds is dropped and named; the rest
// is kept, and the message itself is never lost because of its context.
import { channelFields } from '../xmpp/stanzas.js';
import { el, textOf, type XmlElement } from '../xmpp/xml.js';

export const NS_CONTEXT = 'urn:xmpp:consult:context:0';

/** The well-known keys, in the order they are shown; anything else is a free field. */
export const CONTEXT_KEYS = ['name', 'email', 'phone', 'page', 'order'] as const;
export type ContextKey = (typeof CONTEXT_KEYS)[number];

/** A visitor's context as kept: the well-known keys and free fields, every value a non-empty bounded string. */
export type VisitorContext = Partial<Record<ContextKey, string>> & { fields?: Record<string, string> };

/** What a session's context may hold (the same for every shop: it is what an agent's screen can show). */
export const CONTEXT_LIMITS = {
  /** Entries in all: well-known keys and free fields. */
  entries: 20,
  /** Characters of one value (and of a free field's name, at most 64). */
  valueChars: 256,
  /** Characters of all names and values together. */
  totalChars: 2048,
} as const;
const FIELD_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

/** What one message says: values to set, '' to remove; and the parts dropped, each with why. */
export interface ContextUpdate {
  set: Partial<Record<ContextKey, string>> & { fields?: Record<string, string> };
  dropped: string[];
}

const CHECKS: Record<ContextKey, (v: string) => string | undefined> = {
  name: () => undefined,
  email: (v) => (/^[^\s@]+@[^\s@]+$/.test(v) ? undefined : 'is not an e-mail address'),
  phone: (v) => (/^\+?[0-9][0-9 ().\-/]{1,40}$/.test(v) ? undefined : 'is not a phone number'),
  page: (v) => (/^https?:\/\/\S+$/i.test(v) ? undefined : 'is not an http(s) URL'),
  order: () => undefined,
};

const isKey = (k: string): k is ContextKey => (CONTEXT_KEYS as readonly string[]).includes(k);

/** A value as kept: trimmed, control characters gone; or why it cannot be kept. */
function cleanValue(label: string, raw: unknown, check?: (v: string) => string | undefined): { v: string } | { why: string } {
  if (typeof raw === 'number' && Number.isFinite(raw)) raw = String(raw);
  if (typeof raw !== 'string') return { why: `${label} is not a string` };
  const v = [...raw]
    .map((ch) => (ch < ' ' || ch === '\u007f' ? ' ' : ch)) // control characters (a newline too) become spaces
    .join('')
    .trim();
  if (v.length > CONTEXT_LIMITS.valueChars) return { why: `${label} is longer than ${CONTEXT_LIMITS.valueChars} characters` };
  const bad = v ? check?.(v) : undefined;
  return bad ? { why: `${label} ${bad}` } : { v };
}

function setField(u: ContextUpdate, name: string, raw: unknown): void {
  if (!FIELD_NAME.test(name)) {
    u.dropped.push(`field ${JSON.stringify(name.slice(0, 64))} has no valid name (1 to 64 of A-Z a-z 0-9 _ . : -)`);
    return;
  }
  const c = cleanValue(`field ${name}`, raw);
  if ('why' in c) u.dropped.push(c.why);
  else (u.set.fields ??= {})[name] = c.v;
}

function setKey(u: ContextUpdate, key: ContextKey, raw: unknown): void {
  const c = cleanValue(key, raw, CHECKS[key]);
  if ('why' in c) u.dropped.push(c.why);
  else u.set[key] = c.v;
}

/** The context a stanza carries, from its `<context/>` child(ren) in our namespace and its channelid; undefined: none. */
export function contextOf(stanza: XmlElement): ContextUpdate | undefined {
  const u: ContextUpdate = { set: {}, dropped: [] };
  let found = false;
  // A channelid that is no JSON object is not ours to judge: routing ignores it too.
  const o = channelFields(stanza);
  if (o) {
    for (const k of CONTEXT_KEYS)
      if (k in o) {
        found = true;
        setKey(u, k, o[k]);
      }
    if ('fields' in o) {
      found = true;
      const f = o.fields;
      if (f && typeof f === 'object' && !Array.isArray(f)) for (const [n, v] of Object.entries(f)) setField(u, n, v);
      else u.dropped.push('channelid fields is not an object');
    }
  }
  for (const c of stanza.children) {
    if (typeof c === 'string' || c.name !== 'context' || c.attrs.xmlns !== NS_CONTEXT) continue;
    found = true;
    for (const part of c.children) {
      if (typeof part === 'string') continue;
      if (isKey(part.name)) setKey(u, part.name, textOf(part));
      else if (part.name === 'field') setField(u, part.attrs.var ?? '', textOf(part));
      else u.dropped.push(`<${part.name}> is not a context element (use ${CONTEXT_KEYS.join(', ')} or field)`);
    }
  }
  return found ? u : undefined;
}

/** The stanza without its context children (the server gives the agent its own structured child instead). */
export function withoutContext(stanza: XmlElement): XmlElement {
  const children = stanza.children.filter((c) => typeof c === 'string' || c.name !== 'context' || c.attrs.xmlns !== NS_CONTEXT);
  return children.length === stanza.children.length ? stanza : { ...stanza, children };
}

/** The entries of a context in display order: well-known keys first, then free fields by name. */
export function contextEntries(ctx: VisitorContext | undefined): [string, string][] {
  if (!ctx) return [];
  const out: [string, string][] = [];
  for (const k of CONTEXT_KEYS) if (ctx[k]) out.push([k, ctx[k]!]);
  for (const n of Object.keys(ctx.fields ?? {}).sort()) out.push([n, ctx.fields![n]]);
  return out;
}

const sizeOf = (ctx: VisitorContext) => contextEntries(ctx).reduce((n, [k, v]) => n + k.length + v.length, 0);
const countOf = (ctx: VisitorContext) => CONTEXT_KEYS.filter((k) => ctx[k]).length + Object.keys(ctx.fields ?? {}).length;

/**
 * The context after an update: its values replace the old ones, '' removes one. A new entry past the bounds is
 * dropped (named in `dropped`): what was known before stays. Returns undefined when nothing changed.
 */
export function mergeContext(old: VisitorContext | undefined, u: ContextUpdate): { ctx: VisitorContext; dropped: string[] } | undefined {
  const next: VisitorContext = structuredClone(old ?? {});
  const dropped = [...u.dropped];
  const tryPut = (label: string, put: () => void, undo: () => void) => {
    put();
    if (countOf(next) > CONTEXT_LIMITS.entries) {
      undo();
      dropped.push(`${label}: a context holds at most ${CONTEXT_LIMITS.entries} entries`);
    } else if (sizeOf(next) > CONTEXT_LIMITS.totalChars) {
      undo();
      dropped.push(`${label}: a context holds at most ${CONTEXT_LIMITS.totalChars} characters`);
    }
  };
  for (const k of CONTEXT_KEYS) {
    const v = u.set[k];
    if (v === undefined) continue;
    const prev = next[k];
    if (v === '') delete next[k];
    else
      tryPut(
        k,
        () => {
          next[k] = v;
        },
        () => {
          if (prev === undefined) delete next[k];
          else next[k] = prev;
        },
      );
  }
  for (const [n, v] of Object.entries(u.set.fields ?? {})) {
    const fields = (next.fields ??= {});
    const prev = fields[n];
    if (v === '') delete fields[n];
    else
      tryPut(
        `field ${n}`,
        () => {
          fields[n] = v;
        },
        () => {
          if (prev === undefined) delete fields[n];
          else fields[n] = prev;
        },
      );
    if (Object.keys(fields).length === 0) delete next.fields;
  }
  if (sameContext(next, old) && dropped.length === 0) return undefined;
  return { ctx: next, dropped };
}

export const isEmptyContext = (ctx: VisitorContext | undefined) => contextEntries(ctx).length === 0;

/** The same entries (whatever order they were added in). */
export const sameContext = (a: VisitorContext | undefined, b: VisitorContext | undefined) =>
  JSON.stringify(contextEntries(a)) === JSON.stringify(contextEntries(b));

/** The server's structured child: the context as kept, in display order. */
export function contextElement(ctx: VisitorContext): XmlElement {
  const kids: XmlElement[] = [];
  for (const k of CONTEXT_KEYS) if (ctx[k]) kids.push(el(k, {}, [ctx[k]!]));
  for (const n of Object.keys(ctx.fields ?? {}).sort()) kids.push(el('field', { var: n }, [ctx.fields![n]]));
  return el('context', { xmlns: NS_CONTEXT }, kids);
}

/** One line for people: `name: Ann; email: ann@example.com; plan: gold`. */
export function contextText(ctx: VisitorContext | undefined): string {
  return contextEntries(ctx)
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ');
}

/** Lower-cased "key value" lines: what an archive search by context matches against. */
export function contextSearchText(ctx: VisitorContext | undefined): string {
  return contextEntries(ctx)
    .map(([k, v]) => `${k} ${v}`.toLowerCase())
    .join('\n');
}
