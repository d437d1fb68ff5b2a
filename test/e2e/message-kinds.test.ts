// End to end: QChat's message kinds beyond text through a real ejabberd with mod_consult and the real sidecar on
// PGlite, with plain XMPP clients sending the exact stanzas of docs/behaviour.md (*Message kinds*): a photo each way
// (msgType 3, the inline image object; body attributes and other children intact), a revoke each way (type='revoke',
// msgType -2, the revoked body id kept, rewritten from the shop with realfrom/realto), and the archive, through the
// admin API, showing both photo lines revoked with their URLs. A watching supervisor gets each revoke as a revoke
// (its JSON body intact, marked monitored), and the shop's webhook (a real receiver here) a message.revoked for each.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import parse from '@xmpp/xml/lib/parse.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { EventReceiver } from '../support/event-receiver.js';
import { type Element, bodyId, isAck, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const AGENT = `test01@${D}`;
const VISITOR = `visitor1@${D}`;
const SUE = `sue@${D}`;
const NS_SUPERVISOR = 'urn:xmpp:consult:supervisor:0';
const HOOK_SECRET = 'e2e-message-kinds-webhook-secret';
const TOKEN = 'e2e-admin-token-message-kinds';
const IMG = 'https://img.example.com/file/v2/7f3a.png';
const SEND = '{&quot;cn&quot;:&quot;consult&quot;,&quot;d&quot;:&quot;send&quot;,&quot;usrType&quot;:&quot;usr&quot;}';
const RECV = '{&quot;d&quot;:&quot;recv&quot;,&quot;usrType&quot;:&quot;usr&quot;,&quot;cn&quot;:&quot;consult&quot;}';

// What the clients send (ejabberd sets `from`).
const visitorPhoto =
  `<message type='consult' to='${SHOP}' realfrom='${VISITOR}' realto='${AGENT}' channelid='${SEND}' qchatid='4' isHiddenMsg='0'>` +
  `<body msgType='3' maType='6' id='PHOTO-V1'>[obj type="image" value="${IMG}" width=640 height=480]</body>` +
  `<active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
const agentPhoto =
  `<message type='consult' to='${SHOP}' realfrom='${AGENT}' realto='${VISITOR}' channelid='${SEND}' qchatid='5' isHiddenMsg='0'>` +
  `<body msgType='3' maType='3' id='PHOTO-A1' backupinfo='{&quot;w&quot;:100}'>[obj type="image" value="${IMG}?s=2" width=100 height=80]</body></message>`;
const revoke = (id: string, self: string, peer: string, qchatid: string) =>
  `<message type='revoke' to='${SHOP}' realfrom='${self}' realto='${peer}' channelid='${SEND}' qchatid='${qchatid}'>` +
  `<body msgType='-2' maType='6' id='${id}'>{"messageId":"${id}","message":"revoke a message","fromId":"${self}"}</body></message>`;

// What the other side gets: from the shop, rewritten; msec_times is the sidecar's clock, so it is compared apart.
const expected = (xml: string) => parse(xml).toString();
const withoutTime = (el: Element) => {
  const copy = parse(el.toString());
  assert.match(String(copy.attrs.msec_times), /^\d{13}$/);
  delete copy.attrs.msec_times;
  return copy.toString();
};

interface Ctx {
  stack: Stack;
  store: E2eStore;
  adminPort: number;
  visitor: TestClient;
  agent: TestClient;
  sue: TestClient;
  receiver: EventReceiver;
}
const e2e = suite<Ctx>('e2e QChat message kinds (photo, revoke) through ejabberd [pglite]');

setUpSuite(e2e, async (ctx) => {
  ctx.store = await openStore('pglite');
  ctx.adminPort = await freePort();
  ctx.receiver = new EventReceiver(HOOK_SECRET);
  await ctx.receiver.start();
  ctx.stack = await startStack({
    domain: D,
    config: {
      store: ctx.store.url,
      systemJid: `admin@${D}`,
      admin: { port: ctx.adminPort, token: TOKEN },
      events: { url: ctx.receiver.url, secret: HOOK_SECRET, messages: true, retryBaseMs: 50, retryMaxMs: 500 },
      shops: [{ jid: SHOP, name: 'Kinds shop', language: 'en', supervisors: [SUE], agents: [{ jid: AGENT, maxSessions: 5 }] }],
    },
    users: ['visitor1', 'test01', 'sue'],
    sidecarStartMs: 90_000, // a busy 2-core machine: its first start compiles the sources
  });
  ctx.agent = await ctx.stack.connect('test01', 'pc');
  ctx.visitor = await ctx.stack.connect('visitor1', 'web');
  await ctx.visitor.send(`<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='HI-1'>hello</body></message>`);
  await ctx.agent.waitFor(bodyId('HI-1'));
  ctx.sue = await ctx.stack.connect('sue', 'pc');
  await ctx.sue.send(`<message type='chat' to='${SHOP}'><body id='MO-1'>/monitor ${VISITOR}</body></message>`);
  await ctx.sue.waitFor((el) => (el.getChildText('body') ?? '').includes('You are monitoring'));
});

e2e.after(async (ctx) => {
  try {
    await ctx.stack?.stop();
  } finally {
    await ctx.store?.stop();
    await ctx.receiver?.close();
  }
});

e2e('a photo from the visitor reaches the agent from the shop, its body and chat state intact; acked', async (ctx) => {
  await ctx.visitor.send(visitorPhoto);
  await ctx.visitor.waitFor(isAck('PHOTO-V1'));
  const got = await ctx.agent.waitFor(bodyId('PHOTO-V1'));
  assert.is(
    withoutTime(got),
    expected(
      `<message xmlns='jabber:client' from='${SHOP}' to='${AGENT}' type='consult' realfrom='${VISITOR}' realto='${AGENT}' channelid='${RECV}' qchatid='4' isHiddenMsg='0'>` +
        `<body msgType='3' maType='6' id='PHOTO-V1'>[obj type="image" value="${IMG}" width=640 height=480]</body>` +
        `<active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
    ),
  );
});

e2e('a photo from the agent reaches the visitor from the shop (qchatid 5, realfrom the agent), backupinfo kept', async (ctx) => {
  await ctx.agent.send(agentPhoto);
  await ctx.agent.waitFor(isAck('PHOTO-A1'));
  const got = await ctx.visitor.waitFor(bodyId('PHOTO-A1'));
  assert.is(
    withoutTime(got),
    expected(
      `<message xmlns='jabber:client' from='${SHOP}' to='${VISITOR}' type='consult' realfrom='${AGENT}' realto='${VISITOR}' channelid='${RECV}' qchatid='5' isHiddenMsg='0'>` +
        `<body msgType='3' maType='3' id='PHOTO-A1' backupinfo='{&quot;w&quot;:100}'>[obj type="image" value="${IMG}?s=2" width=100 height=80]</body></message>`,
    ),
  );
});

e2e('a revoke from the visitor reaches the agent as a revoke from the shop, the revoked id kept; acked', async (ctx) => {
  await ctx.visitor.send(revoke('PHOTO-V1', VISITOR, AGENT, '4'));
  await ctx.visitor.waitFor(isAck('PHOTO-V1')); // a second ack of that id: the photo's was taken by the first test
  const got = await ctx.agent.waitFor((el) => el.attrs.type === 'revoke');
  assert.is(
    withoutTime(got),
    expected(
      `<message xmlns='jabber:client' from='${SHOP}' to='${AGENT}' type='revoke' realfrom='${VISITOR}' realto='${AGENT}' channelid='${RECV}' qchatid='4'>` +
        `<body msgType='-2' maType='6' id='PHOTO-V1'>{"messageId":"PHOTO-V1","message":"revoke a message","fromId":"${VISITOR}"}</body></message>`,
    ),
  );
});

e2e(
  'a revoke from the agent reaches the visitor as a revoke from the shop; a revoke of the other side’s message is refused',
  async (ctx) => {
    await ctx.agent.send(revoke('PHOTO-A1', AGENT, VISITOR, '5'));
    const got = await ctx.visitor.waitFor((el) => el.attrs.type === 'revoke');
    assert.is(
      withoutTime(got),
      expected(
        `<message xmlns='jabber:client' from='${SHOP}' to='${VISITOR}' type='revoke' realfrom='${AGENT}' realto='${VISITOR}' channelid='${RECV}' qchatid='5'>` +
          `<body msgType='-2' maType='6' id='PHOTO-A1'>{"messageId":"PHOTO-A1","message":"revoke a message","fromId":"${AGENT}"}</body></message>`,
      ),
    );
    // The visitor may not take back the agent's message: an error, and the agent gets nothing.
    await ctx.visitor.send(revoke('HI-REPLY-NONE', VISITOR, AGENT, '4'));
    const refused = await ctx.visitor.waitFor((el) => el.attrs.type === 'error' && bodyId('HI-REPLY-NONE')(el));
    assert.ok(refused.getChild('error')?.getChild('item-not-found', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
    await ctx.agent.settle();
    assert.is(ctx.agent.received.filter((el) => el.attrs.type === 'revoke').length, 1);
  },
);

e2e('the watching supervisor got each revoke as a revoke, JSON intact; the webhook a message.revoked for each', async (ctx) => {
  const copies = await waitUntil('both copies', () => {
    const list = ctx.sue.received.filter((el) => el.attrs.type === 'revoke');
    return list.length === 2 ? list : undefined;
  });
  assert.equal(
    copies.map((el) => [el.getChild('body')?.attrs.id, el.getChildText('body'), el.getChild('monitored', NS_SUPERVISOR)?.attrs.from]),
    [
      ['PHOTO-V1', `{"messageId":"PHOTO-V1","message":"revoke a message","fromId":"${VISITOR}"}`, 'visitor'],
      ['PHOTO-A1', `{"messageId":"PHOTO-A1","message":"revoke a message","fromId":"${AGENT}"}`, 'agent'],
    ],
  );
  const revoked = await waitUntil('the webhook’s message.revoked events', () => {
    const list = ctx.receiver.accepted.filter((r) => r.body.type === 'message.revoked');
    return list.length === 2 ? list : undefined;
  });
  assert.equal(
    revoked.map((r) => [r.signed, r.body.by, r.body.messageId, r.body.visitor, r.body.agent]),
    [
      [true, 'visitor', 'PHOTO-V1', VISITOR, AGENT],
      [true, 'agent', 'PHOTO-A1', VISITOR, AGENT],
    ],
  );
});

e2e('the archive shows both photos revoked, with their URLs', async (ctx) => {
  await ctx.agent.send(`<message type='chat' to='${SHOP}' realto='${VISITOR}'><body id='CLOSE-1'>/close</body></message>`);
  await ctx.agent.waitFor(isAck('CLOSE-1'));
  type Line = { role: string; id?: string; msgType?: string; urls?: string[]; revoked?: true };
  const lines = await waitUntil('the archived session', async () => {
    const res = await fetch(`http://127.0.0.1:${ctx.adminPort}/archive?shop=${SHOP}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const items = ((await res.json()) as { items: { lines: Line[] }[] }).items;
    return items[0]?.lines;
  });
  assert.equal(
    lines.map((l) => [l.role, l.id, l.msgType, l.urls, l.revoked]),
    [
      ['visitor', 'HI-1', undefined, undefined, undefined],
      ['visitor', 'PHOTO-V1', '3', [IMG], true],
      ['agent', 'PHOTO-A1', '3', [`${IMG}?s=2`], true],
    ],
  );
});

e2e.run();
