// A visitor whose agent is gone waits again: the pure decisions over a ShopState with a hand-made context and a
// hand-moved clock. It keeps its place by arrival, is told that place, and the next human gets its history under a
// heading that says whose conversation it was.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { resolveTexts } from '../../../src/domain/texts.js';
import type { BotMode } from '../../../src/domain/shop.js';
import { closeSession, transferSession } from '../../../src/routing/session.js';
import { runTimers } from '../../../src/routing/timers.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { fromAgent } from '../../../src/routing/agent.js';
import { apply, type Change, ShopState } from '../../../src/routing/state.js';
import { parseElement, serialize } from '../../../src/xmpp/xml.js';
import { body, handDecisions, headingsTo, parsed, replayedTo, to } from '../../support/routing.js';

const SHOP = 'shop_1@d.test';
const ANN = 'ann@d.test';
const BOB = 'bob@d.test';
const v = (n: number) => `v${n}@d.test`;
const GRACE_MS = 60_000;

const TEXTS = resolveTexts('en', {});
const AGENT_HEADING = (visitor: string) => `The conversation of ${visitor} with the previous agent follows.`;
const BOT_HEADING = (visitor: string) => `The conversation of ${visitor} with the assistant follows.`;

function setup(o: { mode?: BotMode; max?: number } = {}) {
  const config = parseConfig({
    timers: { offlineGraceSec: GRACE_MS / 1000 },
    shops: [
      {
        jid: SHOP,
        name: 'S',
        language: 'en',
        bot: { mode: o.mode ?? 'none', url: 'http://127.0.0.1:9/bot', timeoutMs: 1000, retries: 0 },
        agents: [],
      },
    ],
  });
  const bench = handDecisions({ config, members: { [ANN]: o.max ?? 1, [BOB]: o.max ?? 1 } });
  const { decide, timers, advance, online } = bench;
  const visitorSays = (visitor: string, text: string, id: string, msgType = '1') => {
    const stanza = parseElement(
      `<message type='consult' from='${visitor}/web' to='${SHOP}'><body id='${id}' msgType='${msgType}'>${text}</body></message>`,
    );
    return parsed(decide((c, w) => fromVisitor(c, w, stanza, visitor, 'consult')).extra);
  };
  const agentSays = (agent: string, visitor: string, text: string, id: string) => {
    const stanza = parseElement(
      `<message type='chat' from='${agent}/pc' to='${SHOP}' realto='${visitor}'><body id='${id}'>${text}</body></message>`,
    );
    return parsed(decide((c, w) => fromAgent(c, w, stanza, agent, 'chat')).extra);
  };
  /** The agent goes offline and stays away past the grace period: the timers act on its sessions. */
  const agentGone = (agent: string) => {
    online.delete(agent);
    const first = timers(); // the sessions are marked orphaned
    advance(GRACE_MS);
    return [...first, ...timers()];
  };
  return { ...bench, visitorSays, agentSays, agentGone };
}

/** A shop's state with these changes applied, as a replay of the journal makes it. */
function stateAfter(changes: Change[]): ShopState {
  const st = new ShopState(SHOP, setup().st.limits);
  for (const c of changes) apply(st, c);
  return st;
}
const requeuedText = (position: number) => `Your agent went offline. You are back in the queue at number ${position}.`;

const t = suite('decisions: a requeued visitor');

t('from a human agent: the next agent gets the history under the previous-agent heading, not the bot one', () => {
  const s = setup();
  s.online.add(ANN);
  s.visitorSays(v(1), 'my order is late', 'm1');
  s.agentSays(ANN, v(1), 'let me check', 'a1');
  const gone = s.agentGone(ANN); // bob is offline: v1 waits again
  assert.equal(body(to(gone, v(1))[0]), requeuedText(1));
  s.online.add(BOB);
  const out = s.timers();
  assert.is(s.st.sessions.get(v(1))?.agent, BOB);
  assert.equal(headingsTo(out, BOB), [AGENT_HEADING(v(1))]);
  assert.equal(replayedTo(out, BOB).map(body), ['my order is late', 'let me check'], 'the conversation so far, marked as history');
  assert.is(to(out, v(1)).length, 0, 'no second welcome');
});

t('from the bot: the human gets the bot heading; from a human after the bot: the previous-agent heading', () => {
  const s = setup({ mode: 'bot-first' });
  s.visitorSays(v(1), 'hello', 'm1'); // to the bot
  s.online.add(ANN);
  const handedOver = s.visitorSays(v(1), 'human', 'm2');
  assert.is(s.st.sessions.get(v(1))?.agent, ANN);
  assert.equal(headingsTo(handedOver, ANN), [BOT_HEADING(v(1))]);
  s.agentGone(ANN);
  s.online.add(BOB);
  const out = s.timers();
  assert.is(s.st.sessions.get(v(1))?.agent, BOB);
  assert.equal(headingsTo(out, BOB), [AGENT_HEADING(v(1))]);
});

t('a shop text override for the previous-agent heading is used, with the visitor and the agent', () => {
  const s = setup();
  const texts = { ...TEXTS, agentHistory: '{visitor} / {agent}' };
  s.online.add(ANN);
  s.visitorSays(v(1), 'hi', 'm1');
  s.agentGone(ANN);
  s.online.add(BOB);
  const out = s.decide((c, w) => runTimers({ ...c, texts }, w)).map((x) => parseElement(serialize(x)));
  assert.equal(headingsTo(out, BOB), [`${v(1)} / ${ANN}`]);
});

t('a move to another agent (offline agent, transfer) names the previous agent, never the bot heading', () => {
  const s = setup();
  s.online.add(ANN);
  s.online.add(BOB);
  s.visitorSays(v(1), 'hi', 'm1'); // ann (least busy, by name)
  assert.is(s.st.sessions.get(v(1))?.agent, ANN);
  const moved = s.agentGone(ANN); // bob has room: the session moves
  assert.is(s.st.sessions.get(v(1))?.agent, BOB);
  assert.equal(headingsTo(moved, BOB), [
    `${ANN} handed the conversation with ${v(1)} to you (reason: ${ANN} went offline). The latest messages follow.`,
  ]);
  s.online.add(ANN);
  const transferred = s.decide((c, w) => transferSession(c, w, s.st.sessions.get(v(1))!, ANN, '')).map((x) => parseElement(serialize(x)));
  assert.equal(headingsTo(transferred, ANN), [`${BOB} handed the conversation with ${v(1)} to you. The latest messages follow.`]);
  assert.equal(replayedTo(transferred, ANN).map(body), ['hi']);
});

t('a visitor who arrived before those waiting goes back ahead of them, told its place', () => {
  const s = setup();
  s.online.add(ANN);
  s.visitorSays(v(1), 'hi', 'm1'); // served by ann at once
  s.advance(1000);
  const second = s.visitorSays(v(2), 'hi', 'm2');
  assert.equal(body(to(second, v(2)).at(-1)!), 'All our agents are busy. You are number 1 in the queue; please wait.');
  s.advance(1000);
  s.visitorSays(v(3), 'hi', 'm3');
  const out = s.agentGone(ANN);
  assert.equal([...s.st.queue.keys()], [v(1), v(2), v(3)]);
  assert.equal(
    [1, 2, 3].map((n) => s.st.positionOf(v(n))),
    [1, 2, 3],
  );
  assert.equal(to(out, v(1)).map(body), [requeuedText(1)]);
  s.online.add(BOB);
  s.timers();
  assert.equal([s.st.sessions.get(v(1))?.agent, [...s.st.queue.keys()]], [BOB, [v(2), v(3)]], 'first come, first served');
});

t('a visitor served from the queue keeps the time it joined the queue, not when it was served', () => {
  const s = setup();
  s.online.add(ANN);
  s.visitorSays(v(1), 'hi', 'm1'); // ann
  s.advance(1000);
  s.visitorSays(v(2), 'hi', 'm2'); // waits (1)
  s.advance(1000);
  s.visitorSays(v(3), 'hi', 'm3'); // waits (2)
  s.advance(1000);
  s.decide((c, w) => [...closeSession(c, w, s.st.sessions.get(v(1))!, 'agent'), ...runTimers(c, w)]);
  assert.is(s.st.sessions.get(v(2))?.agent, ANN, 'v2 taken from the queue after v3 arrived');
  s.advance(1000);
  s.visitorSays(v(4), 'hi', 'm4');
  const out = s.agentGone(ANN);
  assert.equal([...s.st.queue.keys()], [v(2), v(3), v(4)]);
  assert.equal(to(out, v(2)).map(body), [requeuedText(1)]);
});

t("an agent's several visitors go back in arrival order, each told its own place", () => {
  const s = setup({ max: 3 });
  s.online.add(ANN);
  // Built change by change: v2 was served after v1 but had joined the queue before it arrived.
  for (const c of [
    { op: 'open', v: v(1), agent: ANN, at: 3000 },
    { op: 'open', v: v(2), agent: ANN, at: 5000, since: 1000 },
    { op: 'enqueue', v: v(3), at: 2000 },
  ] satisfies Change[])
    s.decide((_cx, w) => w.do(c));
  const out = s.agentGone(ANN);
  assert.equal([...s.st.queue.keys()], [v(2), v(3), v(1)]);
  assert.equal([to(out, v(2)).map(body), to(out, v(1)).map(body)], [[requeuedText(1)], [requeuedText(3)]]);
});

t('the place is counted within the group key the visitor waits for', () => {
  const s = setup();
  s.online.add(ANN);
  s.visitorSays(v(1), 'hi', 'm1');
  s.decide((_cx, w) => w.do({ op: 'enqueue', v: v(2), at: 0, g: 'tv' })); // another group's visitor, earlier
  s.decide((_cx, w) => w.do({ op: 'enqueue', v: v(3), at: 2_000_000 }));
  const out = s.agentGone(ANN);
  assert.equal([...s.st.queue.keys()], [v(2), v(1), v(3)]);
  assert.equal(to(out, v(1)).map(body), [requeuedText(1)]);
});

t('replaying the journal, or loading a snapshot, gives the same queue order and places', () => {
  const s = setup();
  s.online.add(ANN);
  s.visitorSays(v(1), 'hi', 'm1');
  s.advance(1000);
  s.visitorSays(v(2), 'hi', 'm2');
  s.advance(1000);
  s.visitorSays(v(3), 'hi', 'm3');
  s.agentGone(ANN);
  const replayed = new ShopState(SHOP, s.st.limits);
  for (const c of JSON.parse(JSON.stringify(s.journal)) as Change[]) apply(replayed, c);
  const loaded = ShopState.fromParts(SHOP, s.st.limits, s.st.snapshotParts());
  const order = (st: ShopState) => [...st.queue];
  assert.equal(
    order(s.st).map(([visitor]) => visitor),
    [v(1), v(2), v(3)],
  );
  assert.equal(order(replayed), order(s.st));
  assert.equal(order(loaded), order(s.st));
});

t('a requeue written without an arrival time (older journals, the bot hand-over) joins at the back', () => {
  const st = stateAfter([
    { op: 'open', v: v(1), agent: ANN, at: 1000 },
    { op: 'enqueue', v: v(2), at: 2000 },
    { op: 'requeue', v: v(1), at: 3000 },
  ]);
  assert.equal(
    [...st.queue],
    [
      [v(2), 2000],
      [v(1), 3000],
    ],
  );
});

t('undoing a requeue that kept its place leaves the queue as it was', () => {
  const st = stateAfter([
    { op: 'open', v: v(1), agent: ANN, at: 1000 },
    { op: 'enqueue', v: v(2), at: 2000 },
    { op: 'enqueue', v: v(3), at: 3000 },
  ]);
  const undo = apply(st, { op: 'requeue', v: v(1), at: 4000, since: 1000 });
  assert.equal([...st.queue.keys()], [v(1), v(2), v(3)]);
  undo();
  assert.equal(
    [[...st.queue], st.sessions.get(v(1))?.agent, st.waitingFor('')],
    [
      [
        [v(2), 2000],
        [v(3), 3000],
      ],
      ANN,
      2,
    ],
  );
});

t.run();
