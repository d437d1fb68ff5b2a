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

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  htmlEntities: false,
});

type Ordered = Record<string, unknown> & { ':@'?: Record<string, string> };

function fromOrdered(node: Ordered): XmlNode {
  if ('#text' in node) return String(node['#text']);
  const name = Object.keys(node).find((k) => k !== ':@')!;
  const kids = (node[name] as Ordered[]) ?? [];
  return { name, attrs: { ...(node[':@'] ?? {}) }, children: kids.map(fromOrdered) };
}

/** Parses one XML element; throws XmlError with the parser's reason when it is not well-formed. */
export function parseElement(xml: string): XmlElement {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new XmlError(`malformed XML: ${valid.err.msg} (line ${valid.err.line}, col ${valid.err.col})`);
  let parsed: Ordered[];
  try {
    parsed = parser.parse(xml) as Ordered[];
  } catch (e) {
    // Well-formed but beyond what the parser accepts (nesting deeper than MAX_DEPTH): still the sender's fault.
    throw new XmlError(`malformed XML: ${(e as Error).message}`);
  }
  const roots = parsed.map(fromOrdered).filter((n): n is XmlElement => typeof n !== 'string');
  if (roots.length !== 1) throw new XmlError(`expected one root element, found ${roots.length}`);
  return roots[0];
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
