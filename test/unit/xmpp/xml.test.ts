// parseElement takes a stanza in ejabberd's own form after one parse, and sends everything else through the
// validator: malformed input must still be refused although the parser itself mends it without a word.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { XMLValidator } from 'fast-xml-parser';
import { XmlError, keepsChildrenOf, parseElement, type XmlElement, type XmlNode } from '../../../src/xmpp/xml.js';

const refused = (xml: string): string => {
  try {
    parseElement(xml);
  } catch (e) {
    assert.instance(e, XmlError, xml);
    return (e as Error).message;
  }
  assert.unreachable(`accepted: ${xml}`);
  return '';
};

test('malformed stanzas the parser alone would mend are refused, naming the fault', () => {
  for (const xml of ['<a><b></a>', '<a><b>', "<a x='1' x='2'/>", '<a x=1/>', '<a></b>', '<a>', '<1a/>', "<a b='1'c='2'/>"]) {
    assert.match(refused(xml), /^malformed XML: /, xml);
  }
  assert.match(refused('<a/><b/>'), 'expected one root element, found 2');
  assert.match(refused('text'), /malformed XML|expected one root element/);
});

test('a stanza as ejabberd writes it (fxml: single quotes, escaped \' " < & in attributes, and > in text)', () => {
  const xml =
    "<message xmlns='jabber:client' from='v@host/r' to='shop_2@host' type='consult' x='&apos;&quot;&lt;&amp;>'><body id='1' msgType='1'>&apos;&quot;&lt;&amp;&gt; 你好 <!-- --></body></message>";
  // (a comment is not in fxml's form: this one goes through the validator and still parses)
  const el = parseElement(xml);
  assert.is(el.attrs.x, `'"<&>`);
  const body = el.children[0] as XmlElement;
  assert.is(body.children[0], `'"<&> 你好 `);
  const plain = parseElement("<message to='shop_2@host' x='&apos;&quot;&lt;&amp;>'><body>&apos;&quot;&lt;&amp;&gt;</body></message>");
  assert.equal(plain.children, [{ name: 'body', attrs: {}, children: [`'"<&>`] }]);
});

test('other well-formed forms (double quotes, CDATA) parse to the same tree as before', () => {
  const a = parseElement(`<m to="x" t="&lt;"><b>A<![CDATA[<c>]]></b></m>`);
  assert.equal(a, { name: 'm', attrs: { to: 'x', t: '<' }, children: [{ name: 'b', attrs: {}, children: ['A', '<c>'] }] });
});

test('entities: the five predefined decoded once; a DOCTYPE declares none', () => {
  assert.equal(parseElement("<a x='&amp;lt;'>&amp;gt; &#60;</a>"), { name: 'a', attrs: { x: '&lt;' }, children: ['&gt; &#60;'] });
  const declared = parseElement('<!DOCTYPE a [<!ENTITY e "boom">]><a>&e;</a>');
  assert.equal(declared.children, ['&e;']);
});

// Any tree written in fxml's form parses back to itself.
const name = fc.stringMatching(/^[a-z][a-z0-9_:.-]{0,6}$/);
const text = fc.string({ unit: fc.constantFrom('a', ' ', '<', '>', '&', "'", '"', '中', '\n'), minLength: 1, maxLength: 8 });
const tree: fc.Arbitrary<XmlElement> = fc
  .letrec<{ el: XmlElement; node: XmlNode }>((t) => ({
    el: fc.record({
      name,
      attrs: fc.dictionary(name, fc.string({ unit: fc.constantFrom('a', '<', '>', '&', "'", '"', ' '), maxLength: 6 }), {
        maxKeys: 3,
        noNullPrototype: true,
      }),
      children: fc.array(t('node'), { maxLength: 3, depthIdentifier: 'x' }),
    }),
    node: fc.oneof({ depthSize: 'small', depthIdentifier: 'x' }, text, t('el')),
  }))
  .el.map(mergeTexts);
const ESC: Record<string, string> = { "'": '&apos;', '"': '&quot;', '<': '&lt;', '>': '&gt;', '&': '&amp;' };
function fxml(n: XmlNode): string {
  if (typeof n === 'string') return n.replace(/['"<>&]/g, (c) => ESC[c]);
  const attrs = Object.entries(n.attrs)
    .map(([k, v]) => ` ${k}='${v.replace(/['"<&]/g, (c) => ESC[c])}'`)
    .join('');
  return n.children.length ? `<${n.name}${attrs}>${n.children.map(fxml).join('')}</${n.name}>` : `<${n.name}${attrs}/>`;
}
function mergeTexts(e: XmlElement): XmlElement {
  const children: XmlNode[] = [];
  for (const c of e.children) {
    const last = children[children.length - 1];
    if (typeof c === 'string' && typeof last === 'string') children[children.length - 1] = last + c;
    else children.push(typeof c === 'string' ? c : mergeTexts(c));
  }
  return { ...e, children };
}

test('any tree in fxml form parses back to itself', () => {
  fc.assert(
    fc.property(tree, (t) => assert.equal(parseElement(fxml(t)), t)),
    { numRuns: 500 },
  );
});

// Damaged stanzas: whatever is refused by the validator is refused, and whatever it accepts is accepted.
const damaged = fc
  .tuple(tree, fc.nat(), fc.constantFrom('', '<', '>', "'", '"', '&', '/', '=', ' x', '<a>', '</a>', '&x;'))
  .map(([t, at, insert]) => {
    const xml = fxml(t);
    const i = at % (xml.length + 1);
    return xml.slice(0, i) + insert + xml.slice(i + (insert === '' ? 1 : 0));
  });

test('a damaged stanza is accepted exactly when the validator accepts it', () => {
  fc.assert(
    fc.property(damaged, (xml) => {
      let accepted = true;
      try {
        parseElement(xml);
      } catch (e) {
        if (!(e instanceof XmlError)) throw e;
        accepted = false;
      }
      if (XMLValidator.validate(xml) !== true) assert.not.ok(accepted, `accepted malformed ${xml}`);
    }),
    { numRuns: 2000 },
  );
});

test.run();

// The structured verdict: a shim puts out's attributes on the element it holds and keeps that element's children.
// That must be written exactly as out itself would be, so keepsChildrenOf says yes exactly when it is.
test('keepsChildrenOf: yes exactly when the held element with the new attributes is written as the new element', () => {
  const sameName = fc.tuple(tree, tree).map(([a, b]) => [a, { ...b, name: a.name }] as const);
  fc.assert(
    fc.property(sameName, ([held, out]) => {
      const expected = fxml({ ...held, attrs: out.attrs }) === fxml(out);
      assert.is(keepsChildrenOf(fxml(held), out), expected, `${fxml(held)} → ${fxml(out)}`);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(tree, tree, (held, other) => assert.ok(keepsChildrenOf(fxml(held), { ...held, attrs: other.attrs }))),
    { numRuns: 500 },
  );
});

test('keepsChildrenOf: no for a changed child, another name or input not in fxml form', () => {
  const xml = "<message xmlns='jabber:client' to='shop@h' x='a&apos;>b'><body id='1'>hi &amp; &apos;bye&apos;</body></message>";
  const held = parseElement(xml);
  const out = { name: 'message', attrs: { to: 'agent@h', type: 'consult' }, children: held.children };
  assert.ok(keepsChildrenOf(xml, out));
  assert.not.ok(keepsChildrenOf(xml.replace("x='a&apos;>b'", 'x="a\'>b"'), out), 'double quotes');
  assert.not.ok(keepsChildrenOf(xml, { ...out, name: 'iq' }), 'another name');
  assert.not.ok(keepsChildrenOf(xml, { ...out, children: [] }), 'children removed');
  assert.not.ok(keepsChildrenOf(`${xml} `, out), 'trailing text');
  (held.children[0] as XmlElement).attrs.msgType = '1'; // a body attribute written by the sidecar
  assert.not.ok(keepsChildrenOf(xml, out), 'a child changed');
  assert.ok(keepsChildrenOf("<message to='a'/>", { name: 'message', attrs: { to: 'b' }, children: [] }), 'no children either side');
  assert.not.ok(keepsChildrenOf("<message to='a'/>", out), 'children added');
});
