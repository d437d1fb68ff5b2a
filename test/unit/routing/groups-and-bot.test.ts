// The pure decisions of bot-first routing and ratings, over a ShopState with a hand-made context:
// no desk, no journal, no clock but the one given.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { botAnswered } from '../../../src/routing/bot.js';
import { Changes } from '../../../src/routing/changes.js';
import { closeSession } from '../../../src/routing/session.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { runTimers } from '../../../src/routing/timers.js';
import type { Decision } from '../../../src/domain/decision.js';
import { BOT } from '../../../src/routing/state.js';
import type { BotMode } from '../../../src/domain/shop.js';
import { findChild, parseElement, type XmlElement } from '../../../src/xmpp/xml.js';
import { body, handDecisions, parsed } from '../../support/routing.js';

const SHOP = 'shop_1@d.test';
const ANN = 'ann@d.test';
const V = 'v1@d.test';

function setup(mode: BotMode) {
  const config = parseConfig({
    archive: { ratingWindowSec: 60 },
    shops: [
      { jid: SHOP, name: 'S', language: 'en', bot: { mode, url: 'http://127.0.0.1:9/bot', timeoutMs: 1000, retries: 0 }, agents: [] },
    ],
  });
  const bench = handDecisions({ config, members: { [ANN]: 2 } });
  const { st, cx } = bench;
  const say = (text: string, id: string, msgType = '1') => {
    const w = new Changes(st);
    const stanza = parseElement(
      `<message type='consult' from='${V}/web' to='${SHOP}'><body id='${id}' msgType='${msgType}'>${text}</body></message>`,
    );
    return { w, d: fromVisitor(cx(), w, stanza, V, 'consult') };
  };
  return { ...bench, say };
}

const extra = (d: Decision): XmlElement[] => parsed(d.extra);

const t = suite('decisions: bot first, ratings');

t('bot first: acked and welcomed, not relayed; the question is recorded for the desk to ask', () => {
  const s = setup('bot-first');
  s.online.add(ANN);
  const { w, d } = s.say('hello', 'm1');
  assert.is(d.action, 'drop');
  assert.equal(
    extra(d).map((m) => m.attrs.type),
    ['mstat', 'consult'],
  );
  assert.is(s.st.sessions.get(V)!.agent, BOT);
  assert.equal(w.asks, [{ visitor: V, id: 'm1', text: 'hello', msgType: '1' }]);
  const out = botAnswered(s.cx(), new Changes(s.st), V, { text: 'hi, I am a bot' });
  assert.equal([out.length, findChild(out[0], 'body')!.attrs.msgType, body(out[0])], [1, '47', 'hi, I am a bot']);
  assert.equal(
    s.st.transcripts.get(V)!.lines.map((l) => l.role),
    ['visitor', 'bot'],
  );
});

t('an answer arriving after the hand-over is dropped', () => {
  const s = setup('bot-first');
  s.say('hello', 'm1');
  s.online.add(ANN);
  const { d } = s.say('x', 'm2', '65537');
  assert.is(s.st.sessions.get(V)!.agent, ANN);
  assert.ok(extra(d).some((m) => m.attrs.to === ANN && findChild(m, 'delay')));
  assert.equal(botAnswered(s.cx(), new Changes(s.st), V, { text: 'late' }), []);
});

t('timers: a question unanswered past the bot budget goes to a human with a notice; earlier, nothing', () => {
  const s = setup('bot-first');
  s.say('hello', 'm1');
  s.online.add(ANN);
  s.advance(2000);
  assert.equal(runTimers(s.cx(), new Changes(s.st)), []);
  s.advance(10_000);
  const out = runTimers(s.cx(), new Changes(s.st));
  assert.is(s.st.sessions.get(V)!.agent, ANN);
  assert.ok(out.some((m) => m.attrs.to === V && body(m).includes('cannot answer')));
});

t('human first: the bot only while no human can take the visitor', () => {
  const s = setup('human-first');
  s.say('hello', 'm1');
  assert.is(s.st.sessions.get(V)!.agent, BOT);
  const s2 = setup('human-first');
  s2.online.add(ANN);
  assert.is(s2.say('hello', 'm1').d.action, 'rewrite');
});

t('a readmark in a bot session goes nowhere', () => {
  const s = setup('bot-first');
  s.say('hello', 'm1');
  const w = new Changes(s.st);
  const mark = parseElement(`<message type='readmark' read_type='3' from='${V}/web' to='${SHOP}'><body>[]</body></message>`);
  assert.is(fromVisitor(s.cx(), w, mark, V, 'readmark').action, 'drop');
});

t('rating: a digit within the window is stored, not routed; after it, an ordinary message', () => {
  const s = setup('none');
  s.online.add(ANN);
  s.say('hello', 'm1');
  const out = closeSession(s.cx(), new Changes(s.st), s.st.sessions.get(V)!, 'agent');
  const request = out.find((m) => findChild(m, 'rating'))!;
  assert.is(findChild(request, 'rating')!.attrs.session, s.st.ratingDue.get(V)!.id);
  const { w, d } = s.say('3', 'r1');
  assert.equal([d.action, w.list.map((c) => c.op)], ['drop', ['rate']]);
  assert.equal([...s.st.unarchived.values()].map((u) => u.kind).sort(), ['rating', 'session']);
  assert.is(s.say('3', 'r2').d.action, 'rewrite', 'the offer is used up');
});

t('a waiting visitor served by its own next message: one session, the message kept behind the earlier ones', () => {
  const s = setup('none');
  assert.is(s.say('first', 'm1').d.action, 'drop');
  assert.ok(s.st.queue.has(V));
  s.online.add(ANN); // no drain ran: the next message finds an agent free
  const { w, d } = s.say('second', 'm2');
  assert.is(d.action, 'drop');
  assert.equal([s.st.sessions.get(V)?.agent, s.st.queue.size], [ANN, 0]);
  assert.equal(
    w.list.map((c) => c.op),
    ['dequeue', 'open', 'keep'],
  );
  assert.equal(
    s.st.kept.get(V)!.map((k) => k.xml.includes('second')),
    [false, true],
  );
});

t.run();
