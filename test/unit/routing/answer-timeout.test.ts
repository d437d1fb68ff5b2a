// Answer or move on, as pure decisions over a ShopState with a hand-made context and a hand-moved clock: an assigned
// agent that sends nothing within answerTimeoutSec loses the visitor to the next agent, with the history; misses in a
// row set it away until it sets its status again; with nobody else the session stays and the reminder goes on.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import type { Group } from '../../../src/domain/shop.js';
import { Changes, type ShopContext } from '../../../src/routing/changes.js';
import { closeSession, transferSession } from '../../../src/routing/session.js';
import { runTimers } from '../../../src/routing/timers.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { fromAgent } from '../../../src/routing/agent.js';
import { apply, type Change, ShopState, type Undo } from '../../../src/routing/state.js';
import { findChild, parseElement } from '../../../src/xmpp/xml.js';
import { body, handDecisions, headingsTo, parsed, replayedTo, to } from '../../support/routing.js';

const D = 'd.test';
const SHOP = `shop_1@${D}`;
const ANN = `ann@${D}`;
const BOB = `bob@${D}`;
const CAT = `cat@${D}`;
const v = (n: number) => `v${n}@${D}`;
const TIMEOUT_S = 60;
const REMINDER_S = 90;

const toVisitorText = (from: string, to: string) => `Agent ${from} could not answer in time; agent ${to} will help you now.`;
const toOldAgentText = (visitor: string, to: string) =>
  `You did not answer ${visitor} within ${TIMEOUT_S} s; the conversation now belongs to ${to}.`;
const toNewAgentText = (from: string, visitor: string, seconds = TIMEOUT_S) =>
  `${from} handed the conversation with ${visitor} to you (reason: ${from} did not answer within ${seconds} s). The latest messages follow.`;
const awayText = (n: number) =>
  `You missed ${n} chats in a row, so your status is now away and no new chats come to you. Send /status standard to take chats again.`;

interface Setup {
  timeoutSec?: number;
  maxMissed?: number;
  agents?: string[];
  max?: number;
  groups?: Group[];
}

function setup(o: Setup = {}) {
  const config = parseConfig({
    timers: { agentReminderSec: REMINDER_S, idleCloseSec: 3600 },
    shops: [
      {
        jid: SHOP,
        name: 'S',
        language: 'en',
        agents: [],
        ...(o.timeoutSec !== 0 ? { answerTimeoutSec: o.timeoutSec ?? TIMEOUT_S } : {}),
        ...(o.maxMissed ? { maxMissedChats: o.maxMissed } : {}),
      },
    ],
  });
  const agents = o.agents ?? [ANN, BOB];
  const bench = handDecisions({
    config,
    members: Object.fromEntries(agents.map((agent) => [agent, o.max ?? 5])),
    groups: o.groups,
    online: agents,
  });
  const { st, decide } = bench;
  const visitorSays = (visitor: string, text: string, id: string, product?: string) => {
    const channel = product ? ` channelid='{"cn":"consult","d":"send","usrType":"usr","pid":"${product}"}'` : '';
    const stanza = parseElement(
      `<message type='consult' from='${visitor}/web' to='${SHOP}'${channel}><body id='${id}' msgType='1'>${text}</body></message>`,
    );
    return parsed(decide((c, w) => fromVisitor(c, w, stanza, visitor, 'consult')).extra);
  };
  const agentSays = (agent: string, visitor: string | undefined, text: string, id: string) => {
    const realto = visitor ? ` realto='${visitor}'` : '';
    const stanza = parseElement(`<message type='chat' from='${agent}/pc' to='${SHOP}'${realto}><body id='${id}'>${text}</body></message>`);
    const d = decide((c, w) => fromAgent(c, w, stanza, agent, 'chat'));
    return { d, extra: parsed(d.extra) };
  };
  const agentOf = (visitor: string) => st.sessions.get(visitor)?.agent;
  return { ...bench, visitorSays, agentSays, agentOf };
}

const t = suite('decisions: answer or move on');

t('a silent agent loses the session to the next agent, who gets the history; the visitor gets one notice; the first agent is told', () => {
  const s = setup();
  s.visitorSays(v(1), 'my order is late', 'm1');
  s.advance(5000);
  s.visitorSays(v(1), 'hello?', 'm2');
  assert.is(s.agentOf(v(1)), ANN);
  s.advance(TIMEOUT_S * 1000 - 5001);
  assert.equal(s.timers(), [], 'a millisecond before the timeout nothing moves');
  assert.is(s.agentOf(v(1)), ANN);
  s.advance(1);
  const out = s.timers();
  assert.is(s.agentOf(v(1)), BOB);
  assert.equal(to(out, v(1)).map(body), [toVisitorText(ANN, BOB)], 'one notice to the visitor');
  assert.is(to(out, v(1))[0].attrs.qchatid, '5');
  assert.is(findChild(to(out, v(1))[0], 'body')!.attrs.msgType, '15');
  assert.equal(to(out, ANN).map(body), [toOldAgentText(v(1), BOB)], 'the first agent is told');
  assert.equal(headingsTo(out, BOB), [toNewAgentText(ANN, v(1))]);
  assert.equal(replayedTo(out, BOB).map(body), ['my order is late', 'hello?'], 'the conversation so far, marked as history');
  assert.equal(s.st.missed.get(ANN), { inRow: 1, total: 1 }, 'a missed chat for ann');
  assert.is(s.st.missed.get(BOB), undefined);
  const lines = s.st.transcripts.get(v(1))!.lines.filter((l) => l.role === 'system');
  assert.equal(
    lines.map((l) => l.text),
    [`transfer ${ANN} -> ${BOB} (${ANN} did not answer within ${TIMEOUT_S} s)`],
  );
});

t('the next agent has its own clock; a second move does not tell the visitor again and never stays with the same agent', () => {
  const s = setup({ agents: [ANN, BOB, CAT] });
  s.visitorSays(v(1), 'hi', 'm1');
  s.advance(TIMEOUT_S * 1000);
  s.timers();
  const second = s.agentOf(v(1))!;
  assert.is.not(second, ANN);
  assert.is(s.st.sessions.get(v(1))!.answerClockAt, s.st.sessions.get(v(1))!.startedAt + TIMEOUT_S * 1000, 'its clock starts at the move');
  s.advance(TIMEOUT_S * 1000 - 1);
  s.timers(); // (the reminder of the visitor's first message)
  assert.is(s.agentOf(v(1)), second, 'a millisecond before its timeout it stays');
  s.advance(1);
  const out = s.timers();
  const third = s.agentOf(v(1))!;
  assert.ok(third !== second, `moved on from ${second}`);
  assert.equal(to(out, v(1)), [], 'the visitor was told once, at the first move');
  assert.equal(to(out, second).map(body), [toOldAgentText(v(1), third)]);
  assert.is(s.st.sessions.get(v(1))!.silentMoves, 2);
});

t("an agent's answer within the timeout stops the clock and starts its misses in a row again", () => {
  const s = setup();
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.advance(TIMEOUT_S * 1000);
  s.timers(); // to bob: ann missed one
  s.visitorSays(v(2), 'hi', 'm2'); // ann (least busy)
  assert.is(s.agentOf(v(2)), ANN);
  s.advance(10_000);
  const { d } = s.agentSays(ANN, v(2), 'hello, how can I help?', 'a1');
  assert.is(d.action, 'rewrite', 'relayed to the visitor');
  assert.is(s.st.sessions.get(v(2))!.answerClockAt, undefined, 'the clock stopped');
  assert.equal(s.st.missed.get(ANN), { inRow: 0, total: 1 });
  s.advance(TIMEOUT_S * 1000);
  s.timers();
  assert.is(s.agentOf(v(2)), ANN, 'an answered session stays');
});

t('an answer after the timeout but before the timers ran also stops the clock', () => {
  const s = setup();
  s.visitorSays(v(1), 'hi', 'm1');
  s.advance(TIMEOUT_S * 1000 + 500);
  s.agentSays(ANN, v(1), 'sorry, here I am', 'a1');
  s.timers();
  assert.is(s.agentOf(v(1)), ANN);
  assert.is(s.st.missed.get(ANN), undefined);
});

t('maxMissedChats misses in a row set the agent away, told why; not assigned again until it sets itself back', () => {
  const s = setup({ maxMissed: 2 });
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.advance(TIMEOUT_S * 1000);
  s.timers(); // v1 to bob
  s.agentSays(BOB, v(1), 'hello', 'b1');
  s.visitorSays(v(2), 'hi', 'm2'); // ann: fewer chats
  assert.is(s.agentOf(v(2)), ANN);
  s.advance(TIMEOUT_S * 1000);
  const out = s.timers();
  assert.is(s.agentOf(v(2)), BOB);
  assert.equal(to(out, ANN).map(body), [toOldAgentText(v(2), BOB), awayText(2)], 'told it lost the chat, then why it is away');
  assert.is(s.statuses.get(ANN), 'away');
  assert.equal(s.st.missed.get(ANN), { inRow: 0, total: 2 }, 'in a row starts again; the total stays');
  s.visitorSays(v(3), 'hi', 'm3');
  assert.is(s.agentOf(v(3)), BOB, 'ann is away: bob, although busier');
  const back = s.agentSays(ANN, undefined, '/status standard', 's1');
  assert.equal(back.extra.map(body).at(-1), 'Your status is now standard.');
  assert.is(s.statuses.get(ANN), 'standard');
  s.visitorSays(v(4), 'hi', 'm4');
  assert.is(s.agentOf(v(4)), ANN, 'back to taking chats');
});

t('misses that are not in a row do not set the agent away', () => {
  const s = setup({ maxMissed: 2 });
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.advance(TIMEOUT_S * 1000);
  s.timers(); // ann missed v1
  s.visitorSays(v(2), 'hi', 'm2'); // ann
  s.agentSays(ANN, v(2), 'hello', 'a1'); // answered in time
  s.visitorSays(v(3), 'hi', 'm3');
  assert.is(s.agentOf(v(3)), ANN);
  s.advance(TIMEOUT_S * 1000);
  s.timers(); // ann missed v3
  assert.is(s.statuses.get(ANN), undefined, 'still standard');
  assert.equal(s.st.missed.get(ANN), { inRow: 1, total: 2 });
});

t('no other agent can take it: the session stays with its agent and the reminder goes on; it moves once someone can', () => {
  const s = setup();
  s.online.delete(BOB);
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.advance(TIMEOUT_S * 1000);
  assert.equal(s.timers(), [], 'stays, nobody told');
  assert.is(s.agentOf(v(1)), ANN);
  assert.is(s.st.missed.get(ANN), undefined, 'not a missed chat while it stays');
  s.advance((REMINDER_S - TIMEOUT_S) * 1000);
  const reminded = s.timers();
  assert.equal(to(reminded, ANN).map(body), [`A visitor is waiting for your reply: ${v(1)} has waited ${REMINDER_S} s.`]);
  assert.is(s.agentOf(v(1)), ANN);
  s.online.add(BOB);
  s.advance(5000);
  const out = s.timers();
  assert.is(s.agentOf(v(1)), BOB, 'bob came online: it moves on');
  assert.equal(to(out, v(1)).map(body), [toVisitorText(ANN, BOB)]);
});

t('a full or away agent is no candidate: the session stays', () => {
  const s = setup({ max: 1 });
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.visitorSays(v(2), 'hi', 'm2'); // bob
  s.advance(TIMEOUT_S * 1000);
  s.timers();
  assert.equal([s.agentOf(v(1)), s.agentOf(v(2))], [ANN, BOB], 'each other is full');
});

t('a transfer and a visitor served from the queue start the clock of the agent they reach', () => {
  const s = setup({ max: 1 });
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.agentSays(ANN, v(1), 'hello', 'a1');
  assert.is(s.st.sessions.get(v(1))!.answerClockAt, undefined);
  s.advance(1000);
  s.decide((c, w) => transferSession(c, w, s.st.sessions.get(v(1))!, BOB, 'billing'));
  assert.is(s.st.sessions.get(v(1))!.answerClockAt, s.st.sessions.get(v(1))!.startedAt + 1000, 'bob has to answer');
  s.visitorSays(v(2), 'hi', 'm2'); // ann
  s.visitorSays(v(3), 'waiting', 'm3'); // both full: waits
  assert.ok(s.st.queue.has(v(3)));
  s.agentSays(ANN, v(2), 'hello', 'a2');
  s.advance(1000);
  s.decide((c, w) => closeSession(c, w, s.st.sessions.get(v(2))!, 'agent'));
  s.timers(); // the queue is served
  assert.is(s.agentOf(v(3)), ANN);
  assert.is(s.st.sessions.get(v(3))!.answerClockAt, s.st.sessions.get(v(3))!.startedAt);
  s.advance(TIMEOUT_S * 1000);
  const out = s.timers();
  assert.equal([s.agentOf(v(1)), s.agentOf(v(3))], [BOB, ANN], 'bob and ann are each full: both stay');
  assert.equal(to(out, v(1)), []);
});

t('off by default, and never for the bot: no clock starts', () => {
  const s = setup({ timeoutSec: 0 });
  s.visitorSays(v(1), 'hi', 'm1');
  assert.is(s.st.sessions.get(v(1))!.answerClockAt, undefined);
  s.advance(3_000_000);
  s.timers();
  assert.is(s.agentOf(v(1)), ANN);
  assert.is(
    s.journal.some((c) => (c.op === 'open' || c.op === 'move') && c.clock),
    false,
  );
});

t("a group's answerTimeoutSec overrides the shop's, and the next agent comes from the same group", () => {
  const tv: Group = { name: 'tv', isDefault: false, agents: [ANN, CAT], products: ['sku-tv'], answerTimeoutSec: 10 };
  const off: Group = { name: 'books', isDefault: false, agents: [ANN, BOB], products: ['sku-book'], answerTimeoutSec: 0 };
  const s = setup({ agents: [ANN, BOB, CAT], groups: [tv, off] });
  s.visitorSays(v(1), 'my tv', 'm1', 'sku-tv'); // ann (tv)
  s.visitorSays(v(2), 'a book', 'm2', 'sku-book'); // bob (books: ann is busier)
  assert.equal([s.agentOf(v(1)), s.agentOf(v(2))], [ANN, BOB]);
  s.advance(10_000);
  const out = s.timers();
  assert.is(s.agentOf(v(1)), CAT, 'the tv group: cat, not bob');
  assert.equal(headingsTo(out, CAT), [toNewAgentText(ANN, v(1), 10)]);
  s.advance(TIMEOUT_S * 1000);
  s.timers();
  assert.is(s.agentOf(v(2)), BOB, 'the books group has no answer timeout');
});

t('journal replay and a snapshot give the same state; undoing every change gives the empty state back', () => {
  const s = setup({ maxMissed: 2, agents: [ANN, BOB, CAT] });
  s.visitorSays(v(1), 'hi', 'm1');
  s.visitorSays(v(2), 'hi', 'm2');
  s.advance(TIMEOUT_S * 1000);
  s.timers();
  s.visitorSays(v(3), 'hi', 'm3');
  s.agentSays(s.agentOf(v(3))!, v(3), 'hello', 'a3');
  s.advance(TIMEOUT_S * 1000);
  s.timers();
  assert.ok(s.journal.some((c) => c.op === 'move' && c.missed));
  assert.ok(s.journal.some((c) => c.op === 'away'));
  const json = JSON.parse(JSON.stringify(s.journal)) as Change[];
  const replayed = new ShopState(SHOP, s.st.limits);
  const undos: Undo[] = json.map((c) => apply(replayed, c));
  assert.equal(replayed.snapshotParts(), s.st.snapshotParts());
  assert.equal([...replayed.missed], [...s.st.missed]);
  const loaded = ShopState.fromParts(SHOP, s.st.limits, s.st.snapshotParts());
  assert.equal(loaded.snapshotParts(), s.st.snapshotParts());
  assert.equal([...loaded.missed], [...s.st.missed]);
  for (let i = undos.length - 1; i >= 0; i--) undos[i]();
  assert.equal(replayed.snapshotParts(), new ShopState(SHOP, s.st.limits).snapshotParts());
});

t('a decision taken back restores the clock and the misses exactly', () => {
  const s = setup({ maxMissed: 1 });
  s.visitorSays(v(1), 'hi', 'm1');
  s.advance(TIMEOUT_S * 1000);
  const before = s.st.snapshotParts();
  const w = new Changes(s.st);
  const out = runTimers({ ...baseContext(s), now: 1_000_000 + TIMEOUT_S * 1000 }, w);
  assert.ok(out.length > 0 && w.list.some((c) => c.op === 'away'));
  w.revert();
  assert.equal(s.st.snapshotParts(), before);
});

/** A context like the setup's, for a decision run by hand. */
function baseContext(s: ReturnType<typeof setup>): ShopContext {
  let cx: ShopContext | undefined;
  s.decide((c) => {
    cx = c;
  });
  return cx!;
}

t.run();
