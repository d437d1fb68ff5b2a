// Unit tests: the gRPC handlers called directly with the seed's stanzas; every attribute checked.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { stanzaFilterHandlers, startGrpcServer } from '../../../src/grpc/server.js';
import { findChild, parseElement, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { Backends, deskWorld } from '../../support/desk.js';
import { silent } from '../../../src/domain/log.js';

const D = 'dev.fsll.tech';
const VISITOR = `cc6213f74535459098d1fcfdb9a09e4b@${D}`;
const SHOP = `shop_2@${D}`;
const NOW = 1576139854109;

const config = () =>
  parseConfig({
    systemJid: `admin@${D}`,
    shops: [
      {
        jid: SHOP,
        name: '张滨测试店铺',
        noAgentText: '暂无客服',
        queueEnabled: false,
        agents: [
          { jid: `test01@${D}`, maxSessions: 2 },
          { jid: `test02@${D}`, maxSessions: 1 },
        ],
      },
      { jid: `shop_3@${D}`, name: 'Other shop', agents: [{ jid: `test09@${D}`, maxSessions: 1 }] },
    ],
  });

const backends = new Backends();

async function setup() {
  const w = await deskWorld({ backend: 'memory', backends, config: config(), clock: NOW });
  for (const agent of ['test01', 'test02', 'test09']) await w.online(`${agent}@${D}`);
  return { filter: w.filter, w };
}

const visitorMsg = (id: string, text = '1', from = `${VISITOR}/web-107130861`) =>
  `<message type='consult' from='${from}' to='${SHOP}' realfrom='${VISITOR}' realto='test01@${D}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0' xmlns='jabber:client'><body msgType='1' maType='6' id='${id}'>${text}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;

const xml = (b: Buffer | Uint8Array) => parseElement(Buffer.from(b).toString());
const body = (m: XmlElement) => findChild(m, 'body')!;
const withoutId = (a: Record<string, string>) => {
  const { id: _id, ...rest } = a;
  return rest;
};
const RECV = '{"d":"recv","usrType":"usr","cn":"consult"}';

test('visitor → shop: relay to the agent, mstat ack and welcome exactly as in the seed', async () => {
  const { filter } = await setup();
  const v = await filter(visitorMsg('065B725706C54FDAB1E84CEAA8B08D2C'));
  assert.is(v.action, Action.ACTION_REWRITE);
  assert.is(v.seq, '1');

  const relayed = xml(v.stanza);
  assert.equal(relayed.attrs, {
    xmlns: 'jabber:client',
    from: SHOP,
    to: `test01@${D}`,
    type: 'consult',
    realfrom: VISITOR,
    realto: `test01@${D}`,
    channelid: RECV,
    qchatid: '4',
    msec_times: String(NOW),
    isHiddenMsg: '0',
  });
  assert.equal(body(relayed).attrs, { msgType: '1', maType: '6', id: '065B725706C54FDAB1E84CEAA8B08D2C' });
  assert.is(textOf(body(relayed)), '1');
  assert.equal(findChild(relayed, 'active')!.attrs, { xmlns: 'http://jabber.org/protocol/chatstates' });

  assert.is(v.extra.length, 2);
  const [ackEl, welcome] = v.extra.map(xml);
  assert.equal(ackEl.attrs, { xmlns: 'jabber:client', type: 'mstat', msec_times: String(NOW), to: VISITOR });
  assert.equal(ackEl.children.length, 1);
  assert.equal(body(ackEl).attrs, { id: '065B725706C54FDAB1E84CEAA8B08D2C', stat: 'sent' });

  assert.equal(welcome.attrs, {
    xmlns: 'jabber:client',
    from: SHOP,
    to: VISITOR,
    msec_times: String(NOW),
    realfrom: `admin@${D}`,
    realto: VISITOR,
    type: 'consult',
    channelid: RECV,
    qchatid: '5',
    auto_reply: 'true',
    no_update_msg_log: 'true',
  });
  assert.equal(withoutId(body(welcome).attrs), { msgType: '1', maType: '3' });
  assert.match(body(welcome).attrs.id, /^qcadmin[0-9a-f]{32}$/);
  assert.is(textOf(body(welcome)), '张滨测试店铺');
  assert.equal(
    welcome.children.map((c) => (typeof c === 'string' ? c : c.name)),
    ['body', 'active'],
  );
});

test('a second message of the session gets an ack but no new welcome, and the same agent', async () => {
  const { filter } = await setup();
  await filter(visitorMsg('A1'));
  const v = await filter(visitorMsg('A2', 'again'));
  assert.is(v.extra.length, 1);
  assert.is(xml(v.extra[0]).attrs.type, 'mstat');
  assert.is(xml(v.stanza).attrs.to, `test01@${D}`);
});

test('the visitor cannot pick the agent or spoof realfrom: the server sets both', async () => {
  const { filter } = await setup();
  await filter(visitorMsg('B0', 'x', `other@${D}/r`)); // takes test01 (least busy, first in turn)
  const spoof = visitorMsg('B1')
    .replace(`realfrom='${VISITOR}'`, `realfrom='boss@${D}'`)
    .replace(`realto='test01@${D}'`, `realto='test09@${D}'`);
  const relayed = xml((await filter(spoof)).stanza);
  assert.is(relayed.attrs.realfrom, VISITOR);
  assert.is(relayed.attrs.to, `test02@${D}`, 'least busy agent of the shop, not the requested one');
  assert.is(relayed.attrs.realto, `test02@${D}`);
});

test('agent replies: plain chat to the shop (seed form) and consult with realto reach the visitor', async () => {
  const { filter } = await setup();
  await filter(visitorMsg('C0'));
  const plain = `<message from="test01@${D}/pc" isHiddenMsg="0" to="${SHOP}" type="chat" xmlns="jabber:client"><body id="E42169DEDDCC4D6FD6BB7E496D996704" maType="6" msgType="1">122233</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`;
  const v = await filter(plain);
  assert.is(v.action, Action.ACTION_REWRITE);
  const out = xml(v.stanza);
  assert.equal(out.attrs, {
    xmlns: 'jabber:client',
    from: SHOP,
    to: VISITOR,
    type: 'consult',
    realfrom: `test01@${D}`,
    realto: VISITOR,
    channelid: RECV,
    qchatid: '5',
    msec_times: String(NOW),
    isHiddenMsg: '0',
  });
  assert.is(textOf(body(out)), '122233');
  assert.is(v.extra.length, 1);
  const a = xml(v.extra[0]);
  assert.equal(a.attrs, { xmlns: 'jabber:client', type: 'mstat', msec_times: String(NOW), to: `test01@${D}` });
  assert.equal(body(a).attrs, { id: 'E42169DEDDCC4D6FD6BB7E496D996704', stat: 'sent' });

  const consult = `<message type='consult' from='test01@${D}/pc' to='${SHOP}' realfrom='test01@${D}' realto='${VISITOR}' qchatid='5' channelid='{"cn":"consult","d":"send","usrType":"usr"}'><body id='C2' msgType='1' maType='3'>hi</body></message>`;
  const v2 = await filter(consult);
  assert.is(xml(v2.stanza).attrs.to, VISITOR);
  assert.is(xml(v2.stanza).attrs.qchatid, '5');
});

test('an agent serving several visitors must name one: clear error, no guess', async () => {
  const { filter } = await setup();
  await filter(visitorMsg('D0'));
  await filter(visitorMsg('D1', 'x', `v2@${D}/r`)); // test02
  await filter(visitorMsg('D2', 'x', `v3@${D}/r`)); // test01 again
  const v = await filter(`<message from='test01@${D}/pc' to='${SHOP}' type='chat'><body id='D3'>which one?</body></message>`);
  assert.is(v.action, Action.ACTION_REJECT);
  assert.is(v.error!.condition, 'not-acceptable');
  assert.is(v.error!.type, 'modify');
  assert.match(v.error!.text, `${VISITOR}, v3@${D}`);
  assert.is(v.extra.length, 0, 'no ack for a message that was not delivered');
});

test('an agent cannot reply to a visitor it does not serve, nor without any session', async () => {
  const { filter } = await setup();
  await filter(visitorMsg('E0')); // test01 serves VISITOR
  const notMine = await filter(
    `<message type='consult' from='test02@${D}/pc' to='${SHOP}' realto='${VISITOR}'><body id='E1'>x</body></message>`,
  );
  assert.is(notMine.action, Action.ACTION_REJECT);
  assert.is(notMine.error!.condition, 'forbidden');
  const none = await filter(`<message type='chat' from='test02@${D}/pc' to='${SHOP}'><body id='E2'>x</body></message>`);
  assert.is(none.error!.condition, 'item-not-found');
  const otherShop = await filter(`<message type='chat' from='test01@${D}/pc' to='shop_3@${D}'><body id='E3'>x</body></message>`);
  assert.is(otherShop.action, Action.ACTION_REWRITE, 'test01 is a visitor of shop_3, not its agent');
  assert.is(xml(otherShop.stanza).attrs.to, `test09@${D}`);
});

test('readmarks reach the other party of the session', async () => {
  const { filter } = await setup();
  await filter(visitorMsg('F0'));
  const seedReadmark = `<message type='readmark' read_type='3' from='${VISITOR}/web' to='test01@${D}' xmlns='jabber:client'><body msgType='1' maType='3'>[{"id":"qcadmin23aaf77fc2304f208f385ee4531a37e4"}]</body></message>`;
  assert.is((await filter(seedReadmark)).action, Action.ACTION_PASS, 'direct visitor → agent readmark is delivered as is');

  const toShop = await filter(
    `<message type='readmark' read_type='4' from='${VISITOR}/web' to='${SHOP}'><body>[{"id":"E4"}]</body></message>`,
  );
  const r = xml(toShop.stanza);
  assert.equal(
    [r.attrs.type, r.attrs.read_type, r.attrs.to, r.attrs.from, r.attrs.realfrom],
    ['readmark', '4', `test01@${D}`, SHOP, VISITOR],
  );
  assert.is(toShop.extra.length, 0, 'readmarks are not acked');

  const back = await filter(
    `<message type='readmark' read_type='4' from='test01@${D}/pc' to='${SHOP}'><body>[{"id":"F0"}]</body></message>`,
  );
  assert.equal([xml(back.stanza).attrs.type, xml(back.stanza).attrs.to, xml(back.stanza).attrs.read_type], ['readmark', VISITOR, '4']);

  const spoofed = await filter(
    `<message type='readmark' read_type='4' realfrom='boss@${D}' from='${VISITOR}/web' to='test01@${D}'><body>[]</body></message>`,
  );
  assert.is(spoofed.action, Action.ACTION_REWRITE);
  assert.is(xml(spoofed.stanza).attrs.realfrom, undefined);
});

test("no agent with capacity and the queue off: no ack (the message is not kept), the shop's no-agent text", async () => {
  const { filter } = await setup();
  await filter(visitorMsg('G0', 'a', `a@${D}/r`));
  await filter(visitorMsg('G1', 'b', `b@${D}/r`));
  await filter(visitorMsg('G2', 'c', `c@${D}/r`)); // test01: 2/2, test02: 1/1
  const v = await filter(visitorMsg('G3', 'd', `d@${D}/r`));
  assert.is(v.action, Action.ACTION_DROP);
  assert.is(v.extra.length, 1);
  const [notice] = v.extra.map(xml);
  assert.equal(
    [notice.attrs.from, notice.attrs.to, notice.attrs.realfrom, notice.attrs.qchatid, notice.attrs.auto_reply],
    [SHOP, `d@${D}`, SHOP, '5', 'true'],
  );
  assert.is(textOf(body(notice)), '暂无客服');
});

test("concurrent first messages never exceed an agent's capacity", async () => {
  const { filter } = await setup();
  const verdicts = await Promise.all(Array.from({ length: 6 }, (_, i) => filter(visitorMsg(`H${i}`, 'x', `h${i}@${D}/r`))));
  const to = verdicts.filter((v) => v.action === Action.ACTION_REWRITE).map((v) => xml(v.stanza).attrs.to);
  assert.is(to.filter((t) => t === `test01@${D}`).length, 2);
  assert.is(to.filter((t) => t === `test02@${D}`).length, 1);
  assert.is(verdicts.filter((v) => v.action === Action.ACTION_DROP).length, 3);
});

test('bad input gets a clear error: malformed XML, deep nesting, oversized, consult to a non-shop', async () => {
  const { filter } = await setup();
  const bad = await filter(`<message from='a@${D}/r' to='${SHOP}'><body>x</message>`);
  assert.is(bad.action, Action.ACTION_REJECT);
  assert.is(bad.error!.condition, 'bad-request');
  assert.match(bad.error!.text, 'malformed XML');
  const deep = await filter(
    `<message type='consult' from='a@${D}/r' to='${SHOP}'><body id='N1'>${'<b>'.repeat(200)}x${'</b>'.repeat(200)}</body></message>`,
  );
  assert.equal(
    [deep.action, deep.error!.condition, deep.error!.type],
    [Action.ACTION_REJECT, 'bad-request', 'modify'],
    "the sender's fault, not retry-later",
  );
  assert.match(deep.error!.text, 'nested');
  const big = await filter(visitorMsg('I1', 'x'.repeat(300_000)));
  assert.is(big.error!.condition, 'policy-violation');
  const nonShop = await filter(`<message type='consult' from='a@${D}/r' to='shop_99@${D}'><body id='I2'>x</body></message>`);
  assert.is(nonShop.error!.condition, 'item-not-found');
  assert.match(nonShop.error!.text, 'not a shop');
  const presence = await filter(`<presence from='a@${D}/r' to='${SHOP}'/>`);
  assert.is(presence.action, Action.ACTION_PASS);
});

test('typing notifications open no session and get no ack', async () => {
  const { filter } = await setup();
  const v = await filter(
    `<message type='chat' from='${VISITOR}/w' to='${SHOP}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
  );
  assert.is(v.action, Action.ACTION_DROP);
  assert.is(v.extra.length, 0);
  const first = await filter(visitorMsg('J1'));
  assert.is(first.extra.length, 2, 'the first real message still gets the welcome');
});

test('a body without id gets a server id, acked and relayed with it', async () => {
  const { filter } = await setup();
  const v = await filter(`<message type='chat' from='${VISITOR}/w' to='${SHOP}'><body>no id</body></message>`);
  const id = body(xml(v.stanza)).attrs.id;
  assert.match(id, /^add_[0-9a-f]{32}$/);
  assert.is(body(xml(v.extra[0])).attrs.id, id);
});

test('the gRPC server turns Nagle off on its sockets (verdicts must not wait for delayed ACKs)', async () => {
  const { server, nagleDisabled } = await startGrpcServer(
    stanzaFilterHandlers({ desk: {}, link: new ShimLink(silent), watch: {}, log: silent } as never),
    '127.0.0.1',
    0,
  );
  assert.is(nagleDisabled, true);
  server.forceShutdown();
});

test.run();
