// A minimal element model for stanzas: parse with fast-xml-parser, serialize by hand
// so that attribute values and text are escaped exactly once.
import { XMLParser, XMLValidator } from 'fast-xml-parser';

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
}
export type XmlNode = XmlElement | string;

export class XmlError extends Error {}

/** fast-xml-parser's entity decoder, doing nothing: entities are decoded by decodeEntities (processEntities is off). */
const NO_ENTITY_DECODER = {
  reset() {},
  setXmlVersion() {},
  addInputEntities() {},
  decode: (s: string) => s,
};

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  // The five predefined entities are decoded here (decodeEntities): the parser's own entity decoder cost more than
  // the rest of the parse, and it also expanded entities a DOCTYPE declares, which no stanza may carry.
  processEntities: false,
  htmlEntities: false,
  // Otherwise the parser builds an entity decoder (merging entity tables) for every parse, only to leave it unused.
  entityDecoder: NO_ENTITY_DECODER as never,
  cdataPropName: '#cdata', // kept apart: CDATA text is taken as written, never decoded
});

type Ordered = Record<string, unknown> & { ':@'?: Record<string, string> };

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const ENTITY_REF = /&(amp|lt|gt|quot|apos);/g;
/** One pass, so `&amp;lt;` is `&lt;`. Other references (`&#60;`, `&nbsp;`) stay as written, as they always have. */
const decodeEntities = (s: string) => (s.includes('&') ? s.replace(ENTITY_REF, (_, n: string) => PREDEFINED[n]) : s);

function fromOrdered(node: Ordered): XmlNode {
  if ('#text' in node) return decodeEntities(String(node['#text']));
  const name = Object.keys(node).find((k) => k !== ':@')!;
  const kids = (node[name] as Ordered[]) ?? [];
  if (name === '#cdata') return kids.map((k) => String(k['#text'] ?? '')).join('');
  const attrs: Record<string, string> = {};
  const raw = node[':@'];
  if (raw) for (const k in raw) attrs[k] = decodeEntities(raw[k]);
  return { name, attrs, children: kids.map(fromOrdered) };
}

/**
 * Parses one XML element; throws XmlError with the reason when it is not well-formed.
 *
 * fast-xml-parser's parser accepts malformed input without a word (`<a><b>`, `<a x=1/>`), and its validator is a
 * second full pass that cost more than the parse. So the parse runs first, and the stanza is taken as it is when
 * writing the tree back in ejabberd's own form (fxml's: single quotes, its escapes) gives back exactly the input:
 * that form is well-formed by construction, and it is what every stanza from the shim is. Anything else (other
 * quoting, comments, entities, CDATA, what the parser mended or dropped) goes to the validator as before.
 */
export function parseElement(xml: string): XmlElement {
  let roots: XmlElement[] | undefined;
  try {
    roots = (parser.parse(xml) as Ordered[]).map(fromOrdered).filter((n): n is XmlElement => typeof n !== 'string');
  } catch {
    // Beyond what the parser accepts (nesting deeper than MAX_DEPTH): the validator names the fault, else below.
  }
  if (roots?.length === 1 && isInFxmlForm(xml, roots[0])) return roots[0];
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new XmlError(`malformed XML: ${valid.err.msg} (line ${valid.err.line}, col ${valid.err.col})`);
  if (!roots) {
    try {
      parser.parse(xml);
    } catch (e) {
      // Well-formed but beyond what the parser accepts: still the sender's fault.
      throw new XmlError(`malformed XML: ${(e as Error).message}`);
    }
  }
  if (roots?.length !== 1) throw new XmlError(`expected one root element, found ${roots?.length ?? 0}`);
  return roots[0];
}

// Names of one ASCII form, and no character XML 1.0 forbids: otherwise the validator decides.
const NAME = '[A-Za-z_][\\w.:-]*';
const PLAIN_NAME = new RegExp(`^${NAME}$`);
const NAME_AT = new RegExp(NAME, 'y'); // the same names, matched where lastIndex says
const FORBIDDEN_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
const FXML_ATTR = /['"<&]/g;
const FXML_TEXT = /['"<>&]/g;
const HAS_FXML_ATTR = /['"<&]/;
const HAS_FXML_TEXT = /['"<>&]/;

function isInFxmlForm(xml: string, root: XmlElement): boolean {
  return !FORBIDDEN_CHARS.test(xml) && matchFxml(xml, 0, root) === xml.length;
}

/** Where `piece` ends if `xml` has it at `at`, else -1. */
const after = (xml: string, at: number, piece: string) => (at >= 0 && xml.startsWith(piece, at) ? at + piece.length : -1);

/**
 * Walks `node` along `xml` from `at`, piece by piece, without building the string: where its fxml form ends in `xml`,
 * or -1 where `xml` differs from it. (On every stanza: plain calls, no closures.)
 */
function matchFxml(xml: string, at: number, node: XmlNode): number {
  if (typeof node === 'string') return after(xml, at, HAS_FXML_TEXT.test(node) ? node.replace(FXML_TEXT, entity) : node);
  const { name, attrs, children } = node;
  if (!PLAIN_NAME.test(name)) return -1;
  at = after(xml, after(xml, at, '<'), name);
  for (const k in attrs) {
    const v = attrs[k];
    if (!PLAIN_NAME.test(k)) return -1;
    at = after(xml, after(xml, after(xml, at, ' '), k), "='");
    at = after(xml, after(xml, at, HAS_FXML_ATTR.test(v) ? v.replace(FXML_ATTR, entity) : v), "'");
    if (at < 0) return -1;
  }
  if (children.length === 0) return after(xml, at, '/>');
  at = after(xml, at, '>');
  for (let i = 0; i < children.length && at >= 0; i++) at = matchFxml(xml, at, children[i]);
  return after(xml, after(xml, after(xml, at, '</'), name), '>');
}

/**
 * Whether `out` has exactly the children of the element `xml` holds in fxml's form (what a shim forwards), whatever
 * its attributes: a shim holding that element can then take out's attributes onto it and keep its own children
 * rather than parse `out` whole (the structured verdict). Not in fxml's form, another name, or a child added, removed
 * or changed (a body id written, a context child taken out): false.
 */
export function keepsChildrenOf(xml: string, out: XmlElement): boolean {
  const { name, children } = out;
  if (!PLAIN_NAME.test(name)) return false;
  let at = after(xml, after(xml, 0, '<'), name);
  // The start tag's end: attributes are ` name='value'`, and fxml writes a ' inside a value as &apos;.
  while (at > 0 && xml.charCodeAt(at) === 32) {
    const eq = xml.indexOf("='", at);
    const close = eq < 0 ? -1 : xml.indexOf("'", eq + 2);
    if (close < 0 || !isPlainNameAt(xml, at + 1, eq)) return false;
    at = close + 1;
  }
  if (at < 0) return false;
  if (xml.startsWith('/>', at)) return children.length === 0 && at + 2 === xml.length;
  at = children.length === 0 ? -1 : after(xml, at, '>');
  for (let i = 0; i < children.length && at >= 0; i++) at = matchFxml(xml, at, children[i]);
  return after(xml, after(xml, after(xml, at, '</'), name), '>') === xml.length;
}

/** PLAIN_NAME on xml[from, to), without cutting it out. */
function isPlainNameAt(xml: string, from: number, to: number): boolean {
  NAME_AT.lastIndex = from;
  return NAME_AT.test(xml) && NAME_AT.lastIndex === to;
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const entity = (c: string) => ENTITIES[c];
// One pass each; most values need no escaping at all (serialize is on every decision's hot path).
const escapeText = (s: string) => (/[&<>]/.test(s) ? s.replace(/[&<>]/g, entity) : s);
const escapeAttr = (s: string) => (/[&<>"']/.test(s) ? s.replace(/[&<>"']/g, entity) : s);

export function serialize(node: XmlNode): string {
  if (typeof node === 'string') return escapeText(node);
  let out = `<${node.name}`;
  for (const k in node.attrs) out += ` ${k}='${escapeAttr(node.attrs[k])}'`;
  if (node.children.length === 0) return `${out}/>`;
  out += '>';
  for (const c of node.children) out += serialize(c);
  return `${out}</${node.name}>`;
}

export function el(name: string, attrs: Record<string, string>, children: XmlNode[] = []): XmlElement {
  return { name, attrs, children };
}

/** A deep copy (far cheaper than structuredClone for this plain shape). */
export function cloneNode<T extends XmlNode>(node: T): T {
  if (typeof node === 'string') return node;
  return { name: node.name, attrs: { ...node.attrs }, children: node.children.map(cloneNode) } as T;
}

export function findChild(parent: XmlElement, name: string): XmlElement | undefined {
  return parent.children.find((c): c is XmlElement => typeof c !== 'string' && c.name === name);
}

export function textOf(node: XmlElement): string {
  return node.children.map((c) => (typeof c === 'string' ? c : textOf(c))).join('');
}
