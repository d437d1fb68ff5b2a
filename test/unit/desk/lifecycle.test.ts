// Routing rules of a real customer-service desk: availability, capacity, strategies,
// the waiting queue, close / transfer / idle / offline lifecycle. Router driven directly
// through the gRPC handlers and notifications, with a hand-moved clock.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Action, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import type { Limits } from '../../../src/domain/shop.js';
import type { AgentStatus, Strategy } from '../../../src/domain/shop.js';
import { findChild, parseElement, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;

interface WorldOptions {
  strategy?: Strategy;
  agents?: { name: string; max?: number; status?: AgentStatus }[];
  queueEnabled?: boolean;
  random?: () => number;
  limits?: Partial<Limits>;
}

const backends = new Backends();

async function world(backend: Backend, o: WorldOptions = {}) {
  const agents = o.agents ?? [
    { name: 'ann', max: 1 },
    { name: 'bob', max: 1 },
  ];
  const config = parseConfig({
    systemJid: a('admin'),
    timers: { agentReminderSec: 120, idleCloseSec: 1800, offlineGraceSec: 60, stickyTtlSec: 3600, tickSec: 5 },
    shops: [
      {
        jid: SHOP,
        name: 'Shop One',
        welcome: 'Welcome!',
        noAgentText: 'Nobody is here.',
        strategy: o.strategy ?? 'least-busy',
        queueEnabled: o.queueEnabled ?? true,
        limits: o.limits,
        agents: agents.map((x) => ({ jid: a(x.name), maxSessions: x.max ?? 1, status: x.status ?? 'standard' })),
      },
    ],
  });
  const w = await deskWorld({ backend, backends, config, random: o.random });
  const { online, offline } = w;
  // Object.assign keeps w's getters (desk, directory): they follow a restart.
  return Object.assign(w, {
    online: (name: string, resource = 'pc', show = '') => online(a(name), resource, show),
    offline: (name: string, resource = 'pc') => offline(a(name), resource),
    visitorSays: (visitor: string, id: string, text = 'hi') =>
      w.filter(
        `<message type='consult' from='${a(visitor)}/web' to='${SHOP}' qchatid='4'><body id='${id}' msgType='1'>${text}</body></message>`,
      ),
    agentSays: (agent: string, id: string, text: string, realto?: string) =>
      w.filter(
        `<message type='chat' from='${a(agent)}/pc' to='${SHOP}'${realto ? ` realto='${a(realto)}'` : ''}><body id='${id}'>${text}</body></message>`,
      ),
    session: (visitor: string) => w.desk.view.sessions(SHOP).find((s) => s.visitor === a(visitor)),
  });
}

const xml = (b: Uint8Array) => parseElement(Buffer.from(b).toString());
const bodyText = (m: XmlElement) => textOf(findChild(m, 'body')!);
const assignedTo = (v: Verdict) => (v.action === Action.ACTION_REWRITE ? xml(v.stanza).attrs.to : undefined);
const byTo = (stanzas: XmlElement[], to: string) => stanzas.filter((s) => s.attrs.to === to);

for (const backend of BACKENDS) {
  // ---- availability ------------------------------------------------------------
  const availability = suite(`availability [${backend}]`);

  availability('an agent with no connected client is never assigned', async () => {
    const w = await world(backend);
    await w.online('bob');
    for (const v of ['v1']) assert.is(assignedTo(await w.visitorSays(v, `${v}-1`)), a('bob'));
    const queued = await w.visitorSays('v2', 'v2-1');
    assert.is(queued.action, Action.ACTION_DROP, 'ann is offline, bob full: v2 waits');
  });

  availability('an agent with several resources stays online until the last one goes', async () => {
    const w = await world(backend, { agents: [{ name: 'ann', max: 5 }] });
    await w.online('ann', 'pc');
    await w.online('ann', 'phone');
    await w.offline('ann', 'pc');
    assert.is(assignedTo(await w.visitorSays('v1', 'x1')), a('ann'));
    await w.offline('ann', 'phone');
    assert.is((await w.visitorSays('v2', 'x2')).action, Action.ACTION_DROP);
  });

  availability('dnd (status or presence) is never assigned; always-on is assigned even offline', async () => {
    const w = await world(backend, { agents: [{ name: 'ann', status: 'dnd' }, { name: 'bob' }, { name: 'cat', status: 'always-on' }] });
    await w.online('ann');
    await w.online('bob', 'pc', 'dnd');
    assert.is(assignedTo(await w.visitorSays('v1', 'x1')), a('cat'));
    assert.is((await w.visitorSays('v2', 'x2')).action, Action.ACTION_DROP);
    await w.online('bob', 'pc', 'chat');
    assert.is(w.takeSent().filter((s) => s.attrs.to === a('bob')).length, 1, 'bob back to available takes the waiting visitor');
  });

  availability.run();

  // ---- capacity and strategies ---------------------------------------------------
  const strategies = suite(`capacity and strategies [${backend}]`);

  strategies("concurrent arrivals never exceed any agent's capacity; the rest wait in arrival order", async () => {
    const w = await world(backend, {
      agents: [
        { name: 'ann', max: 2 },
        { name: 'bob', max: 3 },
      ],
    });
    await w.online('ann');
    await w.online('bob');
    const verdicts = await Promise.all(Array.from({ length: 20 }, (_, i) => w.visitorSays(`v${i}`, `c${i}`)));
    const to = verdicts.map(assignedTo);
    assert.is(to.filter((t) => t === a('ann')).length, 2);
    assert.is(to.filter((t) => t === a('bob')).length, 3);
    const queue = w.desk.view.queue(SHOP);
    assert.is(queue.length, 15);
  });

  strategies('least-busy: fewest open chats first, ties to whoever waited longest', async () => {
    const w = await world(backend, {
      agents: [
        { name: 'ann', max: 5 },
        { name: 'bob', max: 5 },
      ],
    });
    await w.online('ann');
    await w.online('bob');
    const order = [];
    for (let i = 0; i < 4; i++) order.push(assignedTo(await w.visitorSays(`v${i}`, `l${i}`)));
    assert.equal(order, [a('ann'), a('bob'), a('ann'), a('bob')]);
  });

  strategies('round-robin: a newly added agent takes its turn, not every chat', async () => {
    const w = await world(backend, {
      strategy: 'round-robin',
      agents: [
        { name: 'ann', max: 50 },
        { name: 'bob', max: 50 },
      ],
    });
    await w.online('ann');
    await w.online('bob');
    for (let i = 0; i < 6; i++) {
      await w.visitorSays(`v${i}`, `r${i}`);
      w.advance(1000);
    }
    await w.store.putMembership({ shop: SHOP, agent: a('cat'), maxSessions: 50, joinedAt: w.now() });
    await w.store.putAgent({ jid: a('cat'), status: 'standard' });
    await w.directory.reload();
    await w.online('cat');
    w.advance(1000);
    const next = [];
    for (let i = 6; i < 12; i++) {
      next.push(assignedTo(await w.visitorSays(`v${i}`, `r${i}`)));
      w.advance(1000);
    }
    assert.is(next.filter((t) => t === a('cat')).length, 2, `cat gets its share of 6: ${next.join(', ')}`);
    assert.is(new Set(next.slice(0, 3)).size, 3, 'each agent once per round');
  });

  strategies('random picks among free agents by the injected random source', async () => {
    const w = await world(backend, {
      strategy: 'random',
      random: () => 0.99,
      agents: [
        { name: 'ann', max: 5 },
        { name: 'bob', max: 5 },
      ],
    });
    await w.online('ann');
    await w.online('bob');
    assert.is(assignedTo(await w.visitorSays('v1', 'q1')), a('bob'));
  });

  strategies('sticky: a returning visitor gets the same agent while available, until the hint expires', async () => {
    const w = await world(backend, {
      strategy: 'sticky',
      agents: [
        { name: 'ann', max: 5 },
        { name: 'bob', max: 5 },
      ],
    });
    await w.online('ann');
    await w.online('bob');
    assert.is(assignedTo(await w.visitorSays('other', 'o1')), a('ann'));
    assert.is(assignedTo(await w.visitorSays('v1', 's1')), a('bob'));
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    assert.is(assignedTo(await w.visitorSays('other2', 'o2')), a('bob'), 'least busy: bob has none');
    assert.is(assignedTo(await w.visitorSays('v1', 's2')), a('bob'), 'back to bob although ann waited longer for a chat');
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    await w.offline('bob');
    assert.is(assignedTo(await w.visitorSays('v1', 's3')), a('ann'), 'sticky agent offline: someone else');
    await w.desk.closeSession(SHOP, a('v1'), 'admin'); // the hint is ann now, for stickyTtlSec (3600 s) from here
    await w.online('bob');
    // ann 1 chat (other), bob 1 (other2); bob waited longer for one, so least-busy alone would pick bob.
    const TTL = 3600_000;
    w.advance(TTL - 1);
    assert.is(w.desk.view.stickyAgent(SHOP, a('v1'), w.now()), a('ann'), 'the hint holds until its last millisecond');
    assert.is(assignedTo(await w.visitorSays('v1', 's4')), a('ann'), 'within the hint: ann, not the least-busy bob');
    await w.desk.closeSession(SHOP, a('v1'), 'admin'); // renewed: ann for another hour from now
    w.advance(TTL - 1);
    assert.is(w.desk.view.stickyAgent(SHOP, a('v1'), w.now()), a('ann'), 'closing renewed the hint');
    w.advance(1);
    assert.is(w.desk.view.stickyAgent(SHOP, a('v1'), w.now()), undefined, 'the hint has a lifetime');
    assert.is(assignedTo(await w.visitorSays('v1', 's5')), a('bob'), 'hint expired: least-busy (ties to who waited longest) picks bob');
  });

  strategies.run();

  // ---- waiting queue ---------------------------------------------------------------
  const queue = suite(`waiting queue [${backend}]`);

  queue('kept messages, position notices, no-agent text, oldest first on capacity, delivered in order', async () => {
    const w = await world(backend, { agents: [{ name: 'ann', max: 1 }] });
    // Nobody online: the visitor is kept waiting and told nobody is here.
    const first = await w.visitorSays('v1', 'm1', 'first');
    assert.is(first.action, Action.ACTION_DROP);
    const [ack1, noAgent] = first.extra.map(xml);
    assert.equal([ack1.attrs.type, findChild(ack1, 'body')!.attrs.id], ['mstat', 'm1'], 'kept, so acked');
    assert.is(bodyText(noAgent), 'Nobody is here.');
    const second = await w.visitorSays('v1', 'm2', 'second');
    assert.is(second.extra.length, 1, "a waiting visitor's further messages are acked, not re-noticed");
    await w.visitorSays('v2', 'm3', 'from v2');

    await w.online('ann');
    const out = w.takeSent();
    const toAnn = byTo(out, a('ann'));
    assert.equal(toAnn.map(bodyText), ['first', 'second'], 'v1 (oldest) assigned, its messages in order');
    assert.equal(
      toAnn.map((m) => m.attrs.realfrom),
      [a('v1'), a('v1')],
    );
    assert.is(byTo(out, a('v1')).filter((m) => m.attrs.auto_reply === 'true').length, 1, 'v1 gets the welcome');
    assert.is(byTo(out, a('v2')).length, 0, 'v2 still waits: ann is full');

    const v3 = await w.visitorSays('v3', 'm4');
    assert.match(bodyText(xml(v3.extra.at(-1)!)), '第 2 位', 'position counts those ahead');

    const closed = await w.agentSays('ann', 'r1', '/close');
    assert.is(byTo(closed.extra.map(xml), a('v2')).filter((m) => m.attrs.auto_reply === 'true').length, 1, 'v2 welcomed in the verdict');
    await w.desk.settled();
    const next = byTo(w.takeSent(), a('ann'));
    assert.equal(next.map(bodyText), ['from v2'], "v2's kept message follows, released after the close is durable");
    const sessions = w.desk.view.sessions(SHOP);
    assert.equal(
      sessions.map((s) => s.visitor),
      [a('v2')],
      'closing freed the slot for v2, then v3 waits',
    );
    const waiting = w.desk.view.queue(SHOP);
    assert.equal(
      waiting.map((e) => e.visitor),
      [a('v3')],
    );
  });

  queue('queue off: the visitor is told nobody can help, nothing is claimed as kept', async () => {
    const w = await world(backend, { queueEnabled: false });
    const v = await w.visitorSays('v1', 'n1');
    assert.is(v.extra.length, 1);
    assert.is(bodyText(xml(v.extra[0])), 'Nobody is here.');
    assert.is(w.desk.view.queue(SHOP).length, 0);
  });

  queue.run();

  // ---- lifecycle ------------------------------------------------------------------
  const lifecycle = suite(`session lifecycle [${backend}]`);

  lifecycle('an agent ends a session with /close: both get notices, sticky hint kept', async () => {
    const w = await world(backend);
    await w.online('ann');
    await w.visitorSays('v1', 'e1');
    const v = await w.agentSays('ann', 'e2', '/close');
    assert.is(v.action, Action.ACTION_DROP);
    const [ackEl, toVisitor, toAgent] = v.extra.map(xml);
    assert.is(ackEl.attrs.type, 'mstat');
    assert.equal([toVisitor.attrs.to, toVisitor.attrs.qchatid, findChild(toVisitor, 'body')!.attrs.msgType], [a('v1'), '5', '15']);
    assert.equal([toAgent.attrs.to, toAgent.attrs.qchatid], [a('ann'), '4']);
    assert.is(w.session('v1'), undefined);
    const again = await w.agentSays('ann', 'e3', 'hello?');
    assert.is(again.error!.condition, 'item-not-found');
  });

  lifecycle('idle: the agent is reminded after no reply, the session closes after the idle time', async () => {
    const w = await world(backend);
    await w.online('ann');
    await w.visitorSays('v1', 'i1');
    w.advance(119_000);
    await w.tick();
    assert.is(w.takeSent().length, 0);
    w.advance(2_000);
    await w.tick();
    const reminder = w.takeSent();
    assert.is(reminder.length, 1);
    assert.equal([reminder[0].attrs.to, reminder[0].attrs.qchatid], [a('ann'), '4']);
    assert.match(bodyText(reminder[0]), '未回复');
    await w.tick();
    assert.is(w.takeSent().length, 0, 'reminded once per unanswered message');
    w.advance(1800_000);
    await w.tick();
    const sent = w.takeSent();
    const closed = sent.filter((m) => !findChild(m, 'rating'));
    assert.equal(closed.map((m) => m.attrs.to).sort(), [a('ann'), a('v1')]);
    assert.match(bodyText(byTo(closed, a('v1'))[0]), '长时间');
    assert.is(sent.filter((m) => findChild(m, 'rating')).length, 1, 'and the visitor is asked for a rating');
    assert.is(w.session('v1'), undefined);
  });

  lifecycle('transfer: three notices and the new agent sees the recent history', async () => {
    const w = await world(backend);
    await w.online('ann');
    await w.online('bob');
    await w.visitorSays('v1', 't1', 'I need a refund');
    await w.agentSays('ann', 't2', 'Let me check');
    const v = await w.agentSays('ann', 't3', '/transfer bob refunds team');
    assert.is(v.action, Action.ACTION_DROP);
    const out = v.extra.map(xml);
    const toVisitor = byTo(out, a('v1'));
    assert.equal([toVisitor.length, toVisitor[0].attrs.realfrom], [1, a('bob')]);
    assert.is(byTo(out, a('ann')).filter((m) => m.attrs.auto_reply === 'true').length, 1);
    const toBob = byTo(out, a('bob'));
    assert.match(bodyText(toBob[0]), 'refunds team');
    assert.equal(toBob.slice(1).map(bodyText), ['I need a refund', 'Let me check']);
    assert.ok(toBob.slice(1).every((m) => findChild(m, 'delay')?.attrs.xmlns === 'urn:xmpp:delay'));
    assert.is(assignedTo(await w.visitorSays('v1', 't4')), a('bob'));
    assert.is(assignedTo(await w.agentSays('bob', 't5', 'Hi, Bob here')), a('v1'));
    assert.is((await w.agentSays('ann', 't6', 'still me?')).error!.condition, 'item-not-found');
  });

  lifecycle('transfer errors are clear: not an agent of the shop, not available, full', async () => {
    const w = await world(backend, {
      agents: [
        { name: 'ann', max: 1 },
        { name: 'bob', max: 1 },
        { name: 'cat', max: 1 },
      ],
    });
    await w.online('ann');
    await w.visitorSays('v1', 'x1');
    const notMember = await w.agentSays('ann', 'x2', '/transfer zed');
    assert.is(notMember.error!.condition, 'item-not-found');
    const offline = await w.agentSays('ann', 'x3', '/transfer bob');
    assert.is(offline.error!.condition, 'recipient-unavailable');
    await w.online('bob');
    await w.visitorSays('v2', 'x4'); // bob full
    let err: unknown;
    try {
      await w.desk.transferSession(SHOP, a('v1'), a('bob'));
    } catch (e) {
      err = e;
    }
    assert.match(String(err), 'of 1 sessions');
  });

  lifecycle('an agent gone offline: after the grace period the session moves to another agent, or back to the queue', async () => {
    const w = await world(backend, {
      agents: [
        { name: 'ann', max: 2 },
        { name: 'bob', max: 1 },
      ],
    });
    await w.online('ann');
    await w.visitorSays('v1', 'g1');
    await w.visitorSays('v2', 'g2'); // both with ann (bob offline)
    await w.online('bob');
    w.takeSent();
    await w.offline('ann');
    await w.tick();
    w.advance(30_000);
    await w.tick();
    assert.is(w.takeSent().length, 0, 'within the grace period nothing moves');
    w.advance(31_000);
    await w.tick();
    const sessions = w.desk.view.sessions(SHOP);
    const queue = w.desk.view.queue(SHOP);
    assert.equal(
      sessions.map((s) => s.agent),
      [a('bob')],
      'one moved to bob (capacity 1)',
    );
    assert.is(queue.length, 1, 'the other waits again');
    const out = w.takeSent();
    assert.ok(byTo(out, a('bob')).length >= 1, 'bob is told and gets history');
    assert.is(out.filter((m) => m.attrs.to === a('v1') || m.attrs.to === a('v2')).length, 2, 'both visitors are told');
  });

  lifecycle('a visitor requeued from an agent gone offline keeps its place by arrival, after a restart too', async () => {
    const w = await world(backend);
    await w.online('ann');
    await w.visitorSays('v1', 'p1', 'where is my parcel'); // ann; bob is offline
    await w.agentSays('ann', 'pa1', 'checking', 'v1');
    w.advance(1000);
    await w.visitorSays('v2', 'p2');
    w.advance(1000);
    await w.visitorSays('v3', 'p3');
    w.takeSent();
    await w.offline('ann');
    await w.tick();
    w.advance(61_000);
    await w.tick();
    const waiting = () => w.desk.view.queue(SHOP).map((e) => [e.visitor, e.enqueuedAt]);
    const before = waiting();
    assert.equal(
      before.map(([visitor]) => visitor),
      [a('v1'), a('v2'), a('v3')],
      'v1 came first: it waits ahead of v2 and v3',
    );
    assert.equal(byTo(w.takeSent(), a('v1')).map(bodyText), ['客服暂时离线，已为您重新排队，您排在第 1 位。']);
    await w.restart();
    assert.equal(waiting(), before, 'the journal replays the same order');
    await w.online('bob');
    const out = w.takeSent();
    assert.equal(w.session('v1')?.agent, a('bob'));
    assert.equal(
      byTo(out, a('bob')).map((m) => [bodyText(m), !!findChild(m, 'delay')]),
      [
        [`${a('v1')} 与上一位客服的对话如下。`, false],
        ['where is my parcel', true],
        ['checking', true],
      ],
      'the history under the previous-agent heading, not the bot one',
    );
  });

  lifecycle('an agent back within the grace period keeps its sessions', async () => {
    const w = await world(backend);
    await w.online('ann');
    await w.visitorSays('v1', 'k1');
    await w.offline('ann');
    await w.tick();
    w.advance(30_000);
    await w.online('ann');
    w.advance(60_000);
    await w.tick();
    const s = w.session('v1');
    assert.equal([s?.agent, s?.orphanedAt], [a('ann'), 0]);
  });

  lifecycle.run();

  const status = suite(`agent-set status [${backend}]`);

  status('an agent sets do-not-disturb and back with /status; waiting visitors are then served', async () => {
    const w = await world(backend, { agents: [{ name: 'ann', max: 2 }] });
    await w.online('ann');
    const set = await w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}'><body id='st1'>/status dnd</body></message>`);
    assert.is(set.action, Action.ACTION_DROP);
    assert.equal(
      set.extra.map((x) => xml(x).attrs.type),
      ['mstat', 'consult'],
    );
    assert.is((await w.store.getAgent(a('ann')))!.status, 'dnd');
    assert.is((await w.visitorSays('v1', 'st2')).action, Action.ACTION_DROP, 'dnd: v1 waits');
    await w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}'><body id='st3'>/status standard</body></message>`);
    assert.equal(byTo(w.takeSent(), a('ann')).map(bodyText), ['hi'], 'the waiting message reaches ann');
    const bad = await w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}'><body id='st4'>/status sleepy</body></message>`);
    assert.is(xml(bad.stanza).attrs.to, a('v1'), 'not a status command: an ordinary reply');
  });

  status.run();
}

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
