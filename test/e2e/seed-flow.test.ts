// End to end: Debian's ejabberd with mod_consult loaded, the real sidecar process,
// and real XMPP clients running the seed's consult flow over loopback sockets.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { type Element, marker, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const RECV = '{"d":"recv","usrType":"usr","cn":"consult"}';

interface Ctx {
  stack: Stack;
  visitor: TestClient;
  agent1: TestClient;
  agent2: TestClient;
}
const e2e = suite<Ctx>('e2e consult flow through ejabberd');

setUpSuite(e2e, async (ctx) => {
  ctx.stack = await startStack({
    domain: D,
    config: {
      systemJid: `admin@${D}`,
      shops: [
        {
          jid: SHOP,
          name: '张滨测试店铺',
          agents: [
            { jid: `test01@${D}`, maxSessions: 5 },
            { jid: `test02@${D}`, maxSessions: 5 },
          ],
        },
        { jid: `shop_3@${D}`, name: 'Night shop', noAgentText: 'Nobody is on duty.', agents: [{ jid: `test03@${D}`, maxSessions: 1 }] },
      ],
    },
    shimOptions: { timeout: 500, failure_policy: 'reject', breaker_cooldown: 1000 },
    users: ['visitor1', 'visitor2', 'visitor3', 'shop_2', 'test01', 'test02', 'test03'],
  });
  [ctx.visitor, ctx.agent1, ctx.agent2] = await Promise.all([
    ctx.stack.connect('visitor1', 'web-107130861'),
    ctx.stack.connect('test01', 'pc'),
    ctx.stack.connect('test02', 'pc'),
  ]);
});

e2e.after(async (ctx) => {
  await ctx.stack?.stop();
});

const visitorStanza = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}' realfrom='visitor1@${D}' realto='test01@${D}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='${id}'>${text}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const isType = (type: string) => (el: Element) => el.is('message') && el.attrs.type === type;
const attrsOf = (el: Element) => {
  const { xmlns: _x, ...rest } = el.attrs as Record<string, string>;
  return rest;
};

e2e('seed flow: the visitor gets mstat and welcome, the agent the relayed message, the reply comes back', async (ctx) => {
  const { visitor, agent1, agent2 } = ctx;
  await visitor.send(visitorStanza('065B725706C54FDAB1E84CEAA8B08D2C', '1'));

  const ack = await visitor.waitFor((el) => isType('mstat')(el) && bodyId('065B725706C54FDAB1E84CEAA8B08D2C')(el));
  const { msec_times: ackTime, ...ackAttrs } = attrsOf(ack);
  assert.equal(ackAttrs, { type: 'mstat', to: `visitor1@${D}` }, 'mstat has no from, like the seed');
  assert.match(ackTime, /^\d{13}$/);
  assert.equal(ack.getChild('body')!.attrs, { id: '065B725706C54FDAB1E84CEAA8B08D2C', stat: 'sent' });

  const welcome = await visitor.waitFor((el) => el.attrs.auto_reply === 'true');
  const { msec_times: wTime, ...wAttrs } = attrsOf(welcome);
  assert.equal(wAttrs, {
    from: SHOP,
    to: `visitor1@${D}`,
    realfrom: `admin@${D}`,
    realto: `visitor1@${D}`,
    type: 'consult',
    channelid: RECV,
    qchatid: '5',
    auto_reply: 'true',
    no_update_msg_log: 'true',
  });
  assert.match(wTime, /^\d{13}$/);
  const wBody = welcome.getChild('body')!;
  assert.match(wBody.attrs.id, /^qcadmin[0-9a-f]{32}$/);
  assert.equal([wBody.attrs.msgType, wBody.attrs.maType, wBody.getText()], ['1', '3', '张滨测试店铺']);
  assert.ok(welcome.getChild('active'), 'welcome carries <active/>');

  const relayed = await agent1.waitFor(bodyId('065B725706C54FDAB1E84CEAA8B08D2C'));
  const { msec_times: rTime, ...rAttrs } = attrsOf(relayed);
  assert.equal(rAttrs, {
    from: SHOP,
    to: `test01@${D}`,
    type: 'consult',
    realfrom: `visitor1@${D}`,
    realto: `test01@${D}`,
    channelid: RECV,
    qchatid: '4',
    isHiddenMsg: '0',
  });
  assert.match(rTime, /^\d{13}$/);
  assert.equal(
    [relayed.getChild('body')!.attrs.msgType, relayed.getChild('body')!.attrs.maType, relayed.getChildText('body')],
    ['1', '6', '1'],
  );
  // A copy for agent2 would have been routed by the visitor's session before this marker (same two sessions: in order).
  await marker(visitor, agent2);
  assert.is(agent2.received.some(bodyId('065B725706C54FDAB1E84CEAA8B08D2C')), false, 'only the assigned agent gets it');

  // The agent answers with the seed's plain chat to the shop.
  await agent1.send(
    `<message to="${SHOP}" isHiddenMsg="0" type="chat"><body id="E42169DEDDCC4D6FD6BB7E496D996704" maType="6" msgType="1">122233</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`,
  );
  const agentAck = await agent1.waitFor((el) => isType('mstat')(el) && bodyId('E42169DEDDCC4D6FD6BB7E496D996704')(el));
  assert.equal(agentAck.attrs.to, `test01@${D}`);
  assert.is(agentAck.attrs.from, undefined);
  assert.equal(agentAck.getChild('body')!.attrs.stat, 'sent');
  const reply = await visitor.waitFor(bodyId('E42169DEDDCC4D6FD6BB7E496D996704'));
  const { msec_times: _t, ...replyAttrs } = attrsOf(reply);
  assert.equal(replyAttrs, {
    from: SHOP,
    to: `visitor1@${D}`,
    type: 'consult',
    realfrom: `test01@${D}`,
    realto: `visitor1@${D}`,
    channelid: RECV,
    qchatid: '5',
    isHiddenMsg: '0',
  });
  assert.is(reply.getChildText('body'), '122233');

  // Same session: an ack, the same agent, no second welcome.
  await visitor.send(visitorStanza('SECOND-1', 'again'));
  await visitor.waitFor(bodyId('SECOND-1'));
  await agent1.waitFor(bodyId('SECOND-1'));
  // A second welcome would be routed to the visitor before SECOND-1 went to the agent: all in by the settle.
  await visitor.settle();
  assert.is(visitor.received.filter((el) => el.attrs.auto_reply === 'true').length, 1);

  // The seed's readmark goes straight to the agent with its attributes intact.
  await visitor.send(
    `<message type='readmark' read_type='3' to='test01@${D}'><body msgType='1' maType='3'>[{"id":"${wBody.attrs.id}"}]</body></message>`,
  );
  const mark = await agent1.waitFor(isType('readmark'));
  assert.equal([mark.attrs.read_type, mark.attrs.from.split('/')[0]], ['3', `visitor1@${D}`]);
  assert.ok(mark.getChildText('body')!.includes(wBody.attrs.id));
});

e2e('an agent with no session gets a clear XMPP error, not silence', async (ctx) => {
  await ctx.agent2.send(`<message to="${SHOP}" type="chat"><body id="NOSESSION-1">hello?</body></message>`);
  const err = await ctx.agent2.waitFor((el) => el.attrs.type === 'error' && bodyId('NOSESSION-1')(el));
  assert.ok(err.getChild('error')!.getChild('item-not-found'), err.toString());
  assert.match(err.getChild('error')!.getChildText('text') ?? '', 'no open consult session');
});

e2e('a reply to an offline visitor is stored and delivered on login with its QChat attributes', async (ctx) => {
  await ctx.visitor.stop();
  await ctx.agent1.send(`<message to="${SHOP}" type="chat"><body id="OFFLINE-1" msgType="1">while you were away</body></message>`);
  await ctx.agent1.waitFor((el) => isType('mstat')(el) && bodyId('OFFLINE-1')(el));
  ctx.visitor = await ctx.stack.connect('visitor1', 'web-2');
  const stored = await ctx.visitor.waitFor(bodyId('OFFLINE-1'));
  assert.equal(
    [stored.attrs.type, stored.attrs.from, stored.attrs.realfrom, stored.attrs.qchatid, stored.attrs.channelid],
    ['consult', SHOP, `test01@${D}`, '5', RECV],
  );
  assert.is(stored.getChild('body')!.attrs.msgType, '1');
  assert.ok(stored.getChild('delay', 'urn:xmpp:delay'), 'offline storage stamp kept');
  assert.is(stored.getChild('raw'), undefined, 'the carrier element is not written to clients');
});

e2e('a client cannot make the server write an element of its choosing', async (ctx) => {
  const forged = `<message type='chat' realfrom='boss@${D}' from='boss@${D}' to='test01@${D}' qchatid='4'><body>fake</body></message>`;
  await ctx.visitor.send(
    `<message type='chat' to='test02@${D}'><body id='FORGE-1'>hello</body><raw xmlns='urn:xmpp:consult:raw:0'>${forged}</raw></message>`,
  );
  const got = await ctx.agent2.waitFor((el) => el.getChildText('body') === 'hello'); // plain chat: ejabberd keeps no body id
  assert.is(got.attrs.from.split('/')[0], `visitor1@${D}`);
  assert.is(got.getChild('raw'), undefined);
  assert.is(got.getChildText('body'), 'hello');
  // Nor was the forged message written to anyone on its own.
  await Promise.all([marker(ctx.visitor, ctx.agent1), marker(ctx.visitor, ctx.agent2)]);
  const forgedSeen = [...ctx.agent1.received, ...ctx.agent2.received].filter((el) => el.getChildText('body') === 'fake');
  assert.equal(forgedSeen.map(String), [], 'the forged message reached no one');
});

e2e('queue: a visitor waits while nobody is on duty, the agent who logs in gets the kept messages in order', async (ctx) => {
  const night = `shop_3@${D}`;
  const visitor2 = await ctx.stack.connect('visitor2', 'web');
  try {
    await visitor2.send(`<message type='consult' to='${night}'><body id='Q-1'>first</body></message>`);
    await visitor2.waitFor((el) => isType('mstat')(el) && bodyId('Q-1')(el));
    const told = await visitor2.waitFor((el) => el.attrs.auto_reply === 'true');
    assert.is(told.getChildText('body'), 'Nobody is on duty.');
    await visitor2.send(`<message type='consult' to='${night}'><body id='Q-2'>second</body></message>`);
    await visitor2.waitFor((el) => isType('mstat')(el) && bodyId('Q-2')(el));

    const agent3 = await ctx.stack.connect('test03', 'pc');
    try {
      const first = await agent3.waitFor(bodyId('Q-1'));
      const second = await agent3.waitFor(bodyId('Q-2'));
      assert.equal([first.getChildText('body'), second.getChildText('body')], ['first', 'second']);
      assert.equal(
        [first.attrs.from, first.attrs.realfrom, first.attrs.qchatid, first.attrs.type],
        [night, `visitor2@${D}`, '4', 'consult'],
      );
      assert.ok(agent3.received.indexOf(first) < agent3.received.indexOf(second), 'in the order sent');
      const welcome = await visitor2.waitFor((el) => el.attrs.auto_reply === 'true' && el.getChildText('body') === 'Night shop');
      assert.is(welcome.attrs.from, night);
    } finally {
      await agent3.stop();
    }
  } finally {
    await visitor2.stop();
  }
});

e2e(
  'sidecar frozen (SIGSTOP) during a first message: an error, no phantom session; after SIGCONT the next message opens it, with the welcome',
  async (ctx) => {
    const visitor3 = await ctx.stack.connect('visitor3', 'web');
    try {
      ctx.stack.sidecar.signal('SIGSTOP');
      try {
        await visitor3.send(`<message type='consult' to='${SHOP}'><body id='FROZEN-1'>hello?</body></message>`);
        const err = await visitor3.waitFor((el) => el.attrs.type === 'error' && bodyId('FROZEN-1')(el));
        assert.ok(err.getChild('error')!.getChild('service-unavailable'), err.toString());
      } finally {
        ctx.stack.sidecar.signal('SIGCONT');
      }
      // The frozen request reaches the sidecar after its deadline: it must change nothing. The next message (behind it
      // on the same stream) opens the session, so the visitor gets the welcome, and the agent this message only.
      await visitor3.send(`<message type='consult' to='${SHOP}'><body id='FROZEN-2'>hello again</body></message>`);
      await visitor3.waitFor((el) => isType('mstat')(el) && bodyId('FROZEN-2')(el));
      const welcome = await visitor3.waitFor((el) => el.attrs.auto_reply === 'true' && el.attrs.realfrom === `admin@${D}`);
      assert.is(welcome.getChildText('body'), '张滨测试店铺');
      const delivered = await Promise.race([ctx.agent1.waitFor(bodyId('FROZEN-2')), ctx.agent2.waitFor(bodyId('FROZEN-2'))]);
      assert.is(delivered.attrs.realfrom, `visitor3@${D}`);
      // Whatever a late decision on FROZEN-1 could have sent was sent before FROZEN-2's verdict (one stream, in order).
      await Promise.all([ctx.agent1.settle(), ctx.agent2.settle()]);
      const phantom = [...ctx.agent1.received, ...ctx.agent2.received].filter(bodyId('FROZEN-1'));
      assert.is(phantom.length, 0, 'the bounced message never reached an agent');
    } finally {
      await visitor3.stop();
    }
  },
);

e2e('sidecar killed mid-conversation: the visitor gets an error; traffic recovers when it returns', async (ctx) => {
  await ctx.stack.sidecar.kill('SIGKILL');
  await ctx.visitor.send(visitorStanza('DOWN-1', 'anyone there?'));
  const err = await ctx.visitor.waitFor((el) => el.attrs.type === 'error' && bodyId('DOWN-1')(el));
  assert.ok(err.getChild('error')!.getChild('service-unavailable'), err.toString());
  assert.match(err.getChild('error')!.getChildText('text') ?? '', 'not delivered');

  await ctx.stack.startSidecarAgain(20_000);
  await ctx.visitor.send(visitorStanza('UP-1', 'back?'));
  await ctx.visitor.waitFor((el) => isType('mstat')(el) && bodyId('UP-1')(el));
  const delivered = await Promise.race([ctx.agent1.waitFor(bodyId('UP-1')), ctx.agent2.waitFor(bodyId('UP-1'))]);
  assert.is(delivered.attrs.realfrom, `visitor1@${D}`);
});

e2e.run();
