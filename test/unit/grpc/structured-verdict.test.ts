// The structured verdict: to a shim that lists "structured-verdict" in its Hello, a rewrite that kept the stanza's
// children goes as its attributes only and an ack as its fields, so ejabberd parses neither. Whatever the shim
// builds from them must be exactly what the XML form would have given; anything else still goes as XML.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { drop, reject, rewrite } from '../../../src/domain/decision.js';
import { Action, Hook, StanzaFilterClient, type SidecarMessage, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { STRUCTURED_VERDICT, startGrpcServer, stanzaFilterHandlers, toVerdict } from '../../../src/grpc/server.js';
import { silent } from '../../../src/domain/log.js';
import { ack, ackFields, ensureBodyId, relay, type RelayAddress } from '../../../src/xmpp/stanzas.js';
import { el, parseElement, serialize, type XmlElement } from '../../../src/xmpp/xml.js';
import { Backends, deskWorld } from '../../support/desk.js';

const D = 'structured.test';
const SHOP = `shop@${D}`;
const ADDRESS: RelayAddress = { shop: SHOP, to: `ann@${D}`, realfrom: `v1@${D}`, qchatid: '4', now: 1733630000000 };
const input = (body: string) =>
  `<message xmlns='jabber:client' from='v1@${D}/web' to='${SHOP}' type='consult' channelid='{&quot;cn&quot;:&quot;consult&quot;}' isHiddenMsg='0'>${body}<active xmlns='http://jabber.org/protocol/chatstates'/></message>`;

/** What the shim does with a structured rewrite: the element it holds (the input) with the verdict's attributes. */
const heldWith = (xml: string, v: Verdict): XmlElement => ({
  ...parseElement(xml),
  attrs: Object.fromEntries(v.attributes.flatMap((name, i) => (i % 2 === 0 ? [[name, v.attributes[i + 1]]] : []))),
});

test('the ack the shim writes from its fields is the text of ack() (erlang-shim/test/consult_stanza_tests.erl)', () => {
  const a = ack('v1@localhost/web', "B'1&", 1733630000000);
  assert.is(
    serialize(a),
    "<message xmlns='jabber:client' type='mstat' msec_times='1733630000000' to='v1@localhost/web'><body id='B&apos;1&amp;' stat='sent'/></message>",
  );
  assert.equal(ackFields(a), { to: 'v1@localhost/web', bodyId: "B'1&", msecTimes: '1733630000000' });
});

test('ackFields: anything but ack() exactly is not an ack', () => {
  const a = () => ack(`v1@${D}/web`, 'b1', 1);
  const variants: XmlElement[] = [
    { ...a(), attrs: { ...a().attrs, from: SHOP } },
    { ...a(), attrs: { ...a().attrs, type: 'chat' } },
    { ...a(), name: 'iq' },
    { ...a(), children: [el('body', { id: 'b1', stat: 'read' })] },
    { ...a(), children: [el('body', { id: 'b1', stat: 'sent', x: '1' })] },
    { ...a(), children: [el('body', { id: 'b1', stat: 'sent' }, ['text'])] },
    { ...a(), children: [el('body', { id: 'b1', stat: 'sent' }), el('x', {})] },
    { ...a(), children: [] },
  ];
  for (const v of variants) assert.is(ackFields(v), undefined, serialize(v));
});

test('a rewrite that kept the children goes as attributes, the ack as fields; the shim rebuilds both exactly', () => {
  const xml = input("<body id='b1' msgType='1'>hi &amp; &apos;bye&apos;</body>");
  const relayed = relay(parseElement(xml), ADDRESS);
  const notice = el('message', { to: `v1@${D}`, type: 'consult' }, [el('body', {}, ['welcome'])]);
  const d = rewrite(relayed, [ack(`v1@${D}/web`, 'b1', 5), notice]);
  assert.ok(d.action === 'rewrite');

  const v = toVerdict('7', d, xml);
  assert.is(v.action, Action.ACTION_REWRITE);
  assert.is(v.stanza.length, 0, 'no stanza bytes');
  assert.is(serialize(heldWith(xml, v)), d.xml, 'the held element with these attributes is the rewritten stanza');
  assert.equal(v.extra, []);
  assert.equal(v.extras[0], { ack: { to: `v1@${D}/web`, bodyId: 'b1', msecTimes: '5' } });
  assert.is(Buffer.from(v.extras[1].xml!).toString(), serialize(notice), 'anything else as XML, in order');

  const plain = toVerdict('7', d);
  assert.is(Buffer.from(plain.stanza).toString(), d.xml, 'a shim that did not ask gets XML');
  assert.equal(
    plain.extra.map((b) => Buffer.from(b).toString()),
    d.extra.map((x) => serialize(x)),
  );
  assert.equal([plain.attributes, plain.extras], [[], []]);
});

test('a rewrite that changed a child goes whole, as XML', () => {
  const xml = input('<body>no id</body>');
  const original = parseElement(xml);
  ensureBodyId(original); // the sidecar writes the body id the client left out
  const v = toVerdict('8', rewrite(relay(original, ADDRESS), []), xml);
  assert.equal(v.attributes, []);
  assert.is(
    Buffer.from(v.stanza).toString(),
    serialize(relay(original, ADDRESS)).replace(/msec_times='\d+'/, `msec_times='${ADDRESS.now}'`),
  );
  const other = toVerdict('9', rewrite(relay(parseElement(xml), ADDRESS), []), xml.replace(/'/g, '"'));
  assert.equal(other.attributes, [], 'input not in fxml form: XML');
});

test('pass, drop and reject carry no attributes', () => {
  const xml = input("<body id='b1'>hi</body>");
  for (const d of [drop([ack(`v1@${D}/web`, 'b1', 5)]), reject('item-not-found', 'cancel', 'gone')]) {
    const v = toVerdict('1', d, xml);
    assert.equal([v.attributes, v.stanza.length], [[], 0]);
  }
  assert.equal(toVerdict('1', drop([ack(`v1@${D}/web`, 'b1', 5)]), xml).extras, [
    { ack: { to: `v1@${D}/web`, bodyId: 'b1', msecTimes: '5' } },
  ]);
});

test('over a FilterStream: structured only for a shim whose Hello lists the feature', async () => {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [{ jid: `ann@${D}`, maxSessions: 50, status: 'always-on' }] }] });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const handlers = stanzaFilterHandlers({ desk: w.desk, link: new ShimLink(silent), watch: w.watch, log: silent });
  const { server, port } = await startGrpcServer(handlers, '127.0.0.1', 0);
  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const ask = async (node: string, features: string[], xml: string): Promise<Verdict> => {
    const call = client.filterStream();
    const got = new Promise<Verdict>((resolve) => call.on('data', (m: SidecarMessage) => m.verdict && resolve(m.verdict)));
    call.on('error', () => undefined);
    call.write({ hello: { node, hosts: [D], shimVersion: 't', clusterNodes: [], features } });
    call.write({ filter: { seq: '1', hook: Hook.HOOK_FILTER_PACKET, host: D, stanza: Buffer.from(xml), deadlineMs: '0' } });
    const v = await got;
    call.end();
    return v;
  };
  try {
    const first = input("<body id='b1'>hello</body>");
    const s = await ask('ejabberd@new', [STRUCTURED_VERDICT], first);
    assert.is(s.action, Action.ACTION_REWRITE);
    assert.is(s.stanza.length, 0);
    const held = heldWith(first, s);
    assert.equal([held.attrs.to, held.attrs.realfrom, held.attrs.type, held.attrs.qchatid], [`ann@${D}`, `v1@${D}`, 'consult', '4']);
    assert.ok(
      s.extras.some((x) => x.ack?.bodyId === 'b1' && x.ack.to.split('/')[0] === `v1@${D}`),
      `the ack as fields: ${JSON.stringify(s.extras)}`,
    );

    const old = await ask('ejabberd@old', [], first.replace(/b1/g, 'b2'));
    assert.is(parseElement(Buffer.from(old.stanza).toString()).attrs.to, `ann@${D}`);
    assert.equal([old.attributes, old.extras], [[], []]);
    assert.ok(old.extra.some((b) => Buffer.from(b).toString().includes("type='mstat'")));
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test.run();
