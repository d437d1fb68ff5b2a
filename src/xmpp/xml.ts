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
const PLAIN_NAME = /^[A-Za-z_][\w.:-]*$/;
const FORBIDDEN_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
const FXML_ATTR = /['"<&]/g;
const FXML_TEXT = /['"<>&]/g;

function isInFxmlForm(xml: string, root: XmlElement): boolean {
  if (FORBIDDEN_CHARS.test(xml)) return false;
  let out = '';
  let plainNames = true;
  const write = (node: XmlNode): void => {
    if (typeof node === 'string') {
      out += node.replace(FXML_TEXT, entity);
      return;
    }
    if (!PLAIN_NAME.test(node.name)) plainNames = false;
    out += `<${node.name}`;
    for (const k in node.attrs) {
      if (!PLAIN_NAME.test(k)) plainNames = false;
      out += ` ${k}='${node.attrs[k].replace(FXML_ATTR, entity)}'`;
    }
    if (node.children.length === 0) {
      out += '/>';
      return;
    }
    out += '>';
    for (const c of node.children) write(c);
    out += `</${node.name}>`;
  };
  write(root);
  return plainNames && out === xml;
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
