import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { runConsultctl } from '../support/consultctl.js';
import { type E2eStore, openStore } from '../support/e2e-stores.js';
import { EventReceiver } from '../support/event-receiver.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { type Element, isAck, type TestClient } from '../support/xmpp.js';

const SHOP = 'shop_2@localhost';
const SECRET = 'e2e-webhook-secret-0123456789';
const TOKEN = 'e2e-events-admin-token';

interface Ctx {
  adminUrl: string;
  stack: Stack;
  store: E2eStore;
  receiver: EventReceiver;
  agent: TestClient;
}

const bodyOf = (el: Element) => el.getChildText('body') ?? '';
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const chat = (id: string, text: string, realto: string) =>
  `<message type='chat' to='${SHOP}' realto='${realto}'><body id='${id}'>${text}</body></message>`;
const ofVisitor = (r: EventReceiver, v: string) => r.accepted.filter((e) => e.body.visitor === v);
const types = (list: { body: { type: string } }[]) => list.map((e) => e.body.type);

const ctl = (url: string, args: string[]) => runConsultctl(url, TOKEN, args, 30_000);

const ev = suite<Ctx>('events out through ejabberd [pglite]');

setUpSuite(ev, async (ctx) => {
  ctx.receiver = new EventReceiver(SECRET);
  await ctx.receiver.start();
  ctx.store = await openStore('pglite');
  const adminPort = await freePort();
  ctx.adminUrl = `http://127.0.0.1:${adminPort}`;
  ctx.stack = await startStack({
    config: {
      store: ctx.store.url,
      admin: { port: adminPort, token: TOKEN },
      systemJid: 'admin@localhost',
      timers: { tickSec: 1 },
      events: { url: ctx.receiver.url, secret: SECRET, retryBaseMs: 100, retryMaxMs: 1000 },
      shops: [{ jid: SHOP, name: 'Webhook shop', language: 'en', agents: [{ jid: 'test01@localhost', maxSessions: 5 }] }],
    },
    users: ['visitor1', 'visitor2', 'test01'],
    sidecarStartMs: 120_000, // generous: a loaded machine compiles the sidecar slowly
  });
  ctx.agent = await ctx.stack.connect('test01', 'desk');
});

ev.after(async (ctx) => {
  try {
    await ctx.stack?.stop();
  } finally {
    await ctx.store?.stop();
    await ctx.receiver?.close();
  }
});

ev('a session’s events reach the receiver in order, each signed, each id once', async (ctx) => {
  const visitor = await ctx.stack.connect('visitor1', 'web');
  await visitor.send(consult('v1', 'hello'));
  await visitor.waitFor(isAck('v1'));
  await ctx.agent.waitFor((el) => bodyOf(el) === 'hello');
  await ctx.agent.send(chat('c1', '/close', 'visitor1@localhost'));
  await visitor.waitFor((el) => bodyOf(el).startsWith('How did we do?'));
  await visitor.send(consult('r1', '5'));
  await visitor.waitFor((el) => bodyOf(el).startsWith('Thank you for your rating'));
  const mine = await waitUntil(
    'visitor1’s four events',
    () => ofVisitor(ctx.receiver, 'visitor1@localhost').length === 4 && ofVisitor(ctx.receiver, 'visitor1@localhost'),
  );
  assert.equal(types(mine), ['session.opened', 'session.assigned', 'session.closed', 'session.rated']);
  assert.equal(
    mine.map((e) => e.id),
    [1, 2, 3, 4].map((n) => `${SHOP}/${n}`),
  );
  assert.ok(
    ctx.receiver.received.every((r) => r.signed),
    'every request is signed with the shared secret',
  );
  assert.equal([mine[1].body.agent, mine[2].body.reason, mine[3].body.score], ['test01@localhost', 'agent', 5]);
  assert.is(new Set(mine.map((e) => e.body.session)).size, 1, 'one session id');
});

ev('SIGKILL between commit and delivery: after the restart every event arrives, under the same ids, none missing', async (ctx) => {
  const before = ctx.receiver.accepted.length;
  ctx.receiver.answer = 'hold';
  const visitor = await ctx.stack.connect('visitor2', 'web');
  await visitor.send(consult('w1', 'are you there?'));
  await visitor.waitFor(isAck('w1')); // committed: its events are in the journal
  await ctx.agent.waitFor((el) => bodyOf(el) === 'are you there?');
  await ctx.agent.send(chat('c2', '/close', 'visitor2@localhost'));
  await ctx.agent.waitFor((el) => bodyOf(el) === 'The conversation with visitor2@localhost is closed.'); // committed too
  await waitUntil('the first event under way, unanswered', () => ctx.receiver.holding === 1);
  const inFlight = ctx.receiver.received.at(-1)!;
  assert.is(inFlight.body.visitor, 'visitor2@localhost');
  assert.is(ctx.receiver.accepted.length, before, 'nothing of visitor2 was accepted before the crash');
  // The admin API (through consultctl) shows them waiting, the endpoint but never its secret.
  const shown = await ctl(ctx.adminUrl, ['events', SHOP]);
  assert.is(shown.code, 0, shown.stderr);
  assert.not.match(shown.stdout, SECRET);
  const outbox = JSON.parse(shown.stdout);
  assert.equal([outbox.url, outbox.pending, outbox.lastSeq], [ctx.receiver.url, 3, 7]);
  assert.equal(
    outbox.oldest.map((e: { type: string }) => e.type),
    ['session.opened', 'session.assigned', 'session.closed'],
  );

  await ctx.stack.sidecar.kill('SIGKILL');
  ctx.receiver.dropHeld();
  ctx.receiver.answer = 'ok';
  await ctx.stack.startSidecarAgain(120_000);

  const mine = await waitUntil(
    'visitor2’s three events after the restart',
    () => ofVisitor(ctx.receiver, 'visitor2@localhost').length === 3 && ofVisitor(ctx.receiver, 'visitor2@localhost'),
  );
  assert.equal(types(mine), ['session.opened', 'session.assigned', 'session.closed']);
  assert.equal(
    mine.map((e) => e.id),
    [5, 6, 7].map((n) => `${SHOP}/${n}`),
    'numbered on from the first session, none missing',
  );
  assert.is(mine[0].id, inFlight.id, 'the event under way at the crash came again under its id');
  assert.is(mine[0].raw, inFlight.raw, 'with the same body');
  assert.ok(
    ctx.receiver.received.every((r) => r.signed),
    'every request is signed',
  );
});

ev.run();
