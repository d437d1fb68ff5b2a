// Typing notifications (XEP-0085 chat states without a body) as the widget and the console send them, decided by
// hand on a ShopState: in an open session they reach the other side rewritten like any consult message, with no ack,
// no transcript line and no change; before a session, or from an agent without realto for it, they go nowhere.
// Attachment messages (the web pages' XEP-0363 uploads: QChat's photo body and an OOB child) keep the OOB child.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import type { Decision } from '../../../src/domain/decision.js';
import { fromAgent } from '../../../src/routing/agent.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { parseElement } from '../../../src/xmpp/xml.js';
import { handDecisions } from '../../support/routing.js';

const D = 'd.test';
const VD = `visitors.${D}`;
const SHOP = `shop_2@${D}`;
const ANN = `ann@${D}`;
const V = `v0123456789abcdef0123@${VD}`;
const NOW = 1_576_139_854_109;
const SEND = `{&quot;cn&quot;:&quot;consult&quot;,&quot;d&quot;:&quot;send&quot;,&quot;usrType&quot;:&quot;usr&quot;}`;
const RECV = `{&quot;d&quot;:&quot;recv&quot;,&quot;usrType&quot;:&quot;usr&quot;,&quot;cn&quot;:&quot;consult&quot;}`;
const CS = 'http://jabber.org/protocol/chatstates';
const URL = `http://127.0.0.1:5280/upload/${VD}/0a1b/2c3d/cup.png`;

// web/widget/media.ts and web/console/media.ts, as they send them.
const visitorTyping = (state: string) =>
  `<message type='consult' from='${V}/web-1' to='${SHOP}' realfrom='${V}' realto='${ANN}' channelid='${SEND}' qchatid='4' xmlns='jabber:client'><${state} xmlns='${CS}'/></message>`;
const agentTyping = (state: string, realto = V) =>
  `<message to='${SHOP}' from='${ANN}/console-1' realto='${realto}' type='chat' xmlns='jabber:client'><${state} xmlns='${CS}'/></message>`;

function setup() {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', language: 'en', agents: [] }] });
  const bench = handDecisions({ config, members: { [ANN]: 2 }, online: [ANN], now: NOW });
  const visitor = (xml: string) => bench.decide((c, w) => fromVisitor(c, w, parseElement(xml), V, parseElement(xml).attrs.type));
  const agent = (xml: string) => bench.decide((c, w) => fromAgent(c, w, parseElement(xml), ANN, parseElement(xml).attrs.type));
  const open = () => visitor(`<message type='consult' from='${V}/web-1' to='${SHOP}'><body msgType='1' id='T1'>hi</body></message>`);
  return { ...bench, visitor, agent, open };
}
const out = (d: Decision) => (d.action === 'rewrite' ? d.xml : d.action);

const t = suite('decisions: typing notifications and attachment messages');

t('before a session a visitor typing goes nowhere: dropped, nothing changed', () => {
  const s = setup();
  const d = s.visitor(visitorTyping('composing'));
  assert.is(out(d), 'drop');
  assert.equal(d.extra, []);
  assert.equal(s.journal, []);
});

t("a visitor's composing and paused reach its agent rewritten, no ack, no line, no change", () => {
  const s = setup();
  s.open();
  const changes = s.journal.length;
  const lines = s.st.transcripts.get(V)!.lines.length;
  for (const state of ['composing', 'paused']) {
    const d = s.visitor(visitorTyping(state));
    assert.is(
      out(d),
      `<message xmlns='jabber:client' from='${SHOP}' to='${ANN}' type='consult' realfrom='${V}' realto='${ANN}' channelid='${RECV}' qchatid='4' msec_times='${NOW}'><${state} xmlns='${CS}'/></message>`,
    );
    assert.equal(d.extra, [], 'no mstat: nothing to ack');
  }
  assert.is(s.journal.length, changes);
  assert.is(s.st.transcripts.get(V)!.lines.length, lines);
});

t("an agent's composing with realto reaches the visitor from the shop; without a session for realto it is dropped", () => {
  const s = setup();
  s.open();
  const changes = s.journal.length;
  const d = s.agent(agentTyping('composing'));
  assert.is(
    out(d),
    `<message xmlns='jabber:client' from='${SHOP}' to='${V}' type='consult' realfrom='${ANN}' realto='${V}' channelid='${RECV}' qchatid='5' msec_times='${NOW}'><composing xmlns='${CS}'/></message>`,
  );
  assert.equal(d.extra, []);
  assert.is(s.journal.length, changes);
  const stray = s.agent(agentTyping('composing', `someone@${VD}`));
  assert.is(out(stray), 'drop', 'a stray typing notification is no error');
});

t('an attachment message keeps its OOB child and QChat photo body on the way, archived with its URL', () => {
  const s = setup();
  s.open();
  const d = s.visitor(
    `<message type='consult' from='${V}/web-1' to='${SHOP}' realfrom='${V}' realto='${ANN}' channelid='${SEND}' qchatid='4' xmlns='jabber:client'>` +
      `<body msgType='3' maType='6' id='IMG1'>[obj type="image" value="${URL}"]</body><active xmlns='${CS}'/>` +
      `<x xmlns='jabber:x:oob'><url>${URL}</url></x></message>`,
  );
  assert.match(out(d), `<body msgType='3' maType='6' id='IMG1'>[obj type="image" value="${URL}"]</body>`);
  assert.match(out(d), `<x xmlns='jabber:x:oob'><url>${URL}</url></x>`);
  const line = s.st.transcripts.get(V)!.lines.at(-1)!;
  assert.equal([line.id, line.msgType, line.urls], ['IMG1', '3', [URL]]);
});

t.run();
