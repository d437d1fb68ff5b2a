// QChat's message kinds beyond text, decided by hand on a ShopState: revokes (type='revoke', msgType -2) both ways,
// and photo / file / product-card messages relayed with their children and attributes intact and archived with their
// URLs. The stanzas are the exact ones of docs/behaviour.md (*Message kinds*).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import type { Decision } from '../../../src/domain/decision.js';
import { fromAgent } from '../../../src/routing/agent.js';
import { Changes } from '../../../src/routing/changes.js';
import { apply, type Change, keptId, ShopState } from '../../../src/routing/state.js';
import { fromVisitor } from '../../../src/routing/visitor.js';
import { bodyFacts, revokedId } from '../../../src/xmpp/message-kind.js';
import { findChild, parseElement, serialize } from '../../../src/xmpp/xml.js';
import { handDecisions } from '../../support/routing.js';

const D = 'd.test';
const SHOP = `shop_2@${D}`;
const ANN = `ann@${D}`;
const V = `cc6213f74535459098d1fcfdb9a09e4b@${D}`;
const NOW = 1_576_139_854_109;
const RECV = `{&quot;d&quot;:&quot;recv&quot;,&quot;usrType&quot;:&quot;usr&quot;,&quot;cn&quot;:&quot;consult&quot;}`;
const SEND = `{&quot;cn&quot;:&quot;consult&quot;,&quot;d&quot;:&quot;send&quot;,&quot;usrType&quot;:&quot;usr&quot;}`;
const IMG = 'https://img.example.com/file/v2/a1b2.png';

// The visitor's photo (msgType 3, the inline image object), from the web client, the seed's attributes.
const visitorPhoto =
  `<message type='consult' from='${V}/web-107130861' to='${SHOP}' realfrom='${V}' realto='${ANN}' channelid='${SEND}' qchatid='4' isHiddenMsg='0' xmlns='jabber:client'>` +
  `<body msgType='3' maType='6' id='PHOTO1'>[obj type="image" value="${IMG}" width=640 height=480]</body>` +
  `<active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
// The agent's photo (a QChat seat client: consult, qchatid 5, realto the visitor), with a backupinfo attribute.
const agentPhoto =
  `<message type='consult' from='${ANN}/pc' to='${SHOP}' realfrom='${ANN}' realto='${V}' channelid='${SEND}' qchatid='5' isHiddenMsg='0' xmlns='jabber:client'>` +
  `<body msgType='3' maType='3' id='PHOTO2' backupinfo='{&quot;w&quot;:100}'>[obj type="image" value="${IMG}?x=2" width=100 height=80]</body></message>`;
// A consult revoke (msgType -2): the body id is the revoked message's, its JSON names it again.
const revoke = (from: string, realto: string, qchatid: string, id: string, fromId: string) =>
  `<message type='revoke' from='${from}' to='${SHOP}' realfrom='${fromId}' realto='${realto}' channelid='${SEND}' qchatid='${qchatid}' xmlns='jabber:client'>` +
  `<body msgType='-2' maType='6' id='${id}'>{"messageId":"${id}","message":"revoke a message","fromId":"${fromId}"}</body></message>`;

function setup() {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', language: 'en', agents: [] }] });
  const bench = handDecisions({ config, members: { [ANN]: 2 }, online: [ANN], now: NOW });
  const visitor = (xml: string, type = parseElement(xml).attrs.type) =>
    bench.decide((c, w) => fromVisitor(c, w, parseElement(xml), V, type));
  const agent = (xml: string) => bench.decide((c, w) => fromAgent(c, w, parseElement(xml), ANN, parseElement(xml).attrs.type));
  const text = (id: string, t = 'hi') =>
    `<message type='consult' from='${V}/web' to='${SHOP}'><body msgType='1' id='${id}'>${t}</body></message>`;
  return { ...bench, visitor, agent, text };
}
const out = (d: Decision) => (d.action === 'rewrite' ? d.xml : '');
const extras = (d: Decision) => d.extra.map((x) => serialize(x));
const ack = (to: string, id: string) =>
  `<message xmlns='jabber:client' type='mstat' msec_times='${NOW}' to='${to}'><body id='${id}' stat='sent'/></message>`;
const linesOf = (st: ShopState) => st.transcripts.get(V)!.lines;

const t = suite('decisions: QChat message kinds (revoke, photo, file, card)');

t('a photo from the visitor reaches the agent rewritten, children and attributes intact; its line keeps id, kind, URL', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  const d = s.visitor(visitorPhoto);
  assert.is(
    out(d),
    `<message xmlns='jabber:client' from='${SHOP}' to='${ANN}' type='consult' realfrom='${V}' realto='${ANN}' channelid='${RECV}' qchatid='4' msec_times='${NOW}' isHiddenMsg='0'>` +
      `<body msgType='3' maType='6' id='PHOTO1'>[obj type="image" value="${IMG}" width=640 height=480]</body>` +
      `<active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
  );
  assert.equal(extras(d), [ack(V, 'PHOTO1')]);
  assert.equal(linesOf(s.st).at(-1), {
    at: NOW,
    role: 'visitor',
    who: V,
    text: `[obj type="image" value="${IMG}" width=640 height=480]`,
    id: 'PHOTO1',
    msgType: '3',
    urls: [IMG],
  });
});

t('a photo from the agent reaches the visitor rewritten (qchatid 5, realfrom the agent), backupinfo kept', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  const d = s.agent(agentPhoto);
  assert.is(
    out(d),
    `<message xmlns='jabber:client' from='${SHOP}' to='${V}' type='consult' realfrom='${ANN}' realto='${V}' channelid='${RECV}' qchatid='5' msec_times='${NOW}' isHiddenMsg='0'>` +
      `<body msgType='3' maType='3' id='PHOTO2' backupinfo='{&quot;w&quot;:100}'>[obj type="image" value="${IMG}?x=2" width=100 height=80]</body></message>`,
  );
  assert.equal(extras(d), [ack(ANN, 'PHOTO2')]);
  const line = linesOf(s.st).at(-1)!;
  assert.equal([line.role, line.id, line.msgType, line.urls], ['agent', 'PHOTO2', '3', [`${IMG}?x=2`]]);
});

t('a product card (msgType 11, extendInfo) and a file (5, JSON) reach the other side as sent, archived with their URLs', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  const card = `{&quot;data&quot;:{&quot;title&quot;:&quot;Hotel&quot;,&quot;imageUrl&quot;:&quot;https://p.example/i.jpg&quot;}}`;
  const d = s.agent(
    `<message type='consult' from='${ANN}/pc' to='${SHOP}' realto='${V}' qchatid='5'><body msgType='11' id='CARD1' extendInfo='${card}'>[product]</body></message>`,
  );
  assert.is(
    out(d),
    `<message xmlns='jabber:client' from='${SHOP}' to='${V}' type='consult' realfrom='${ANN}' realto='${V}' channelid='${RECV}' qchatid='5' msec_times='${NOW}'>` +
      `<body msgType='11' id='CARD1' extendInfo='${card}'>[product]</body></message>`,
  );
  const file = '{"FILEID":"F1","FileName":"a.pdf","FileSize":"12KB","HttpUrl":"https://f.example/a.pdf"}';
  const e = s.visitor(
    `<message type='consult' from='${V}/web' to='${SHOP}'><body msgType='5' id='FILE1' extendInfo='${file.replace(/"/g, '&quot;')}'>${file}</body></message>`,
  );
  assert.match(out(e), `<body msgType='5' id='FILE1' extendInfo='${file.replace(/"/g, '&quot;')}'>${file}</body>`);
  assert.equal(
    linesOf(s.st)
      .slice(1)
      .map((l) => [l.role, l.msgType, l.urls]),
    [
      ['agent', '11', ['https://p.example/i.jpg']],
      ['visitor', '5', ['https://f.example/a.pdf']],
    ],
  );
});

t('a revoke from the visitor reaches the agent as a revoke, body id and JSON kept; acked; the line is marked', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  s.visitor(visitorPhoto);
  const before = s.st.history.get(V)!.length;
  const d = s.visitor(revoke(`${V}/web-107130861`, ANN, '4', 'PHOTO1', V));
  const relayed =
    `<message xmlns='jabber:client' from='${SHOP}' to='${ANN}' type='revoke' realfrom='${V}' realto='${ANN}' channelid='${RECV}' qchatid='4' msec_times='${NOW}'>` +
    `<body msgType='-2' maType='6' id='PHOTO1'>{"messageId":"PHOTO1","message":"revoke a message","fromId":"${V}"}</body></message>`;
  assert.is(out(d), relayed);
  assert.equal(extras(d), [ack(V, 'PHOTO1')]);
  assert.equal(
    linesOf(s.st).map((l) => [l.id, l.revoked]),
    [
      ['T1', undefined],
      ['PHOTO1', true],
    ],
    'no line for the revoke itself; the photo is marked',
  );
  const history = s.st.history.get(V)!;
  assert.is(history.length, before, 'the revoke takes the message’s place in the history');
  assert.is(history.at(-1)!.xml, relayed);
  assert.is(s.st.sessions.get(V)!.lastVisitorAt, NOW, 'unchanged by the revoke (it is no activity)');
});

t('a revoke from the agent reaches the visitor as a revoke (qchatid 5); its line is marked', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  s.agent(agentPhoto);
  const d = s.agent(revoke(`${ANN}/pc`, V, '5', 'PHOTO2', ANN));
  assert.is(
    out(d),
    `<message xmlns='jabber:client' from='${SHOP}' to='${V}' type='revoke' realfrom='${ANN}' realto='${V}' channelid='${RECV}' qchatid='5' msec_times='${NOW}'>` +
      `<body msgType='-2' maType='6' id='PHOTO2'>{"messageId":"PHOTO2","message":"revoke a message","fromId":"${ANN}"}</body></message>`,
  );
  assert.equal(extras(d), [ack(ANN, 'PHOTO2')]);
  assert.is(linesOf(s.st).at(-1)!.revoked, true);
});

t('a watching supervisor gets a copy of each revoke that stays a revoke: its JSON body intact, marked as monitored', () => {
  const s = setup();
  const SUE = `sue@${D}`;
  s.visitor(s.text('T1'));
  s.agent(agentPhoto);
  s.decide((_c, w) => w.do({ op: 'monitor', v: V, who: SUE, on: true }));
  const fromVisitor = s.visitor(revoke(`${V}/web`, ANN, '4', 'T1', V));
  const fromAgent = s.agent(revoke(`${ANN}/pc`, V, '5', 'PHOTO2', ANN));
  const copy = (relayed: string, from: string) =>
    relayed.replace(/ to='[^']*'/, ` to='${SUE}'`).replace(/<\/message>$/, '') +
    `<monitored xmlns='urn:xmpp:consult:supervisor:0' visitor='${V}' agent='${ANN}' from='${from}'/></message>`;
  const withFlag = (x: string) => x.replace(/ msec_times='(\d+)'>/, " msec_times='$1' no_update_msg_log='true'>");
  assert.equal(extras(fromVisitor), [ack(V, 'T1'), withFlag(copy(out(fromVisitor), 'visitor'))]);
  assert.equal(extras(fromAgent), [ack(ANN, 'PHOTO2'), withFlag(copy(out(fromAgent), 'agent'))]);
  const body = findChild(parseElement(extras(fromAgent)[1]), 'body')!;
  assert.equal(body.children, [`{"messageId":"PHOTO2","message":"revoke a message","fromId":"${ANN}"}`], 'no "[from → to]" prefix');
});

t("a revoke of a message that is not the sender's is refused, and changes nothing", () => {
  const s = setup();
  s.visitor(s.text('T1'));
  s.agent(agentPhoto);
  const snapshot = s.st.snapshotParts();
  const d = s.visitor(revoke(`${V}/web`, ANN, '4', 'PHOTO2', V)); // the agent's photo
  assert.equal(d, {
    action: 'reject',
    error: {
      condition: 'item-not-found',
      type: 'cancel',
      text: `no message PHOTO2 of yours in this consult session with ${SHOP} to revoke`,
    },
    extra: [],
  });
  const e = s.agent(revoke(`${ANN}/pc`, V, '5', 'T1', ANN)); // the visitor's text
  assert.is(e.action, 'reject');
  assert.equal(s.st.snapshotParts(), snapshot);
});

t('a revoke that names no message is a bad request', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  const d = s.visitor(`<message type='revoke' from='${V}/web' to='${SHOP}'><body msgType='-2'>revoke a message</body></message>`);
  assert.is(d.action, 'reject');
  assert.is(d.action === 'reject' && d.error.condition, 'bad-request');
});

t('a waiting visitor’s revoke takes its kept message back; it never opens a session or joins the queue', () => {
  const s = setup();
  s.online.delete(ANN); // nobody serves: the visitor waits
  s.visitor(s.text('T1'));
  s.visitor(visitorPhoto);
  assert.is(s.st.kept.get(V)!.length, 2);
  const d = s.visitor(revoke(`${V}/web`, ANN, '4', 'PHOTO1', V));
  assert.equal(d, { action: 'drop', extra: [parseElement(ack(V, 'PHOTO1'))] });
  assert.equal(
    s.st.kept.get(V)!.map((m) => parseElement(m.xml).children.length),
    [1],
    'only T1 is left to reach an agent',
  );
  assert.ok(s.st.kept.get(V)![0].xml.includes("id='T1'"));
  assert.is(linesOf(s.st).at(-1)!.revoked, true);

  // Someone who never wrote: acked, nothing kept, no session, no queue place.
  const other = `nobody@${D}`;
  const before = s.st.snapshotParts();
  const e = s.decide((c, w) => fromVisitor(c, w, parseElement(revoke(`${other}/web`, ANN, '4', 'X1', other)), other, 'revoke'));
  assert.equal(e, { action: 'drop', extra: [parseElement(ack(other, 'X1'))] });
  assert.equal(s.st.snapshotParts(), before);
  assert.not.ok(s.st.queue.has(other));
});

t('a revoke while kept messages are still on their way to the agent waits behind them, as a revoke', () => {
  const s = setup();
  s.online.delete(ANN);
  s.visitor(s.text('T1'));
  s.online.add(ANN);
  s.visitor(s.text('T2')); // ann takes v: T1 is released, T2 kept behind it
  assert.ok(s.st.sessions.has(V));
  const kept = s.st.kept.get(V)!.length;
  const d = s.visitor(revoke(`${V}/web`, ANN, '4', 'T2', V));
  assert.is(d.action, 'drop');
  const list = s.st.kept.get(V)!;
  assert.is(list.length, kept + 1);
  assert.is(parseElement(list.at(-1)!.xml).attrs.type, 'revoke');
  assert.ok(s.released.includes(V));
  assert.is(linesOf(s.st).find((l) => l.id === 'T2')!.revoked, true);
});

t('a revoke undoes exactly, replays from the journal, and survives a snapshot', () => {
  const s = setup();
  s.visitor(s.text('T1'));
  s.visitor(visitorPhoto);
  const before = s.st.snapshotParts();
  const w = new Changes(s.st);
  fromVisitor(s.cx(), w, parseElement(revoke(`${V}/web`, ANN, '4', 'PHOTO1', V)), V, 'revoke');
  assert.is(w.list.at(-1)!.op, 'revoke');
  w.revert();
  assert.equal(s.st.snapshotParts(), before, 'undone exactly');

  s.visitor(revoke(`${V}/web`, ANN, '4', 'PHOTO1', V));
  const replayed = new ShopState(SHOP, s.st.limits);
  for (const c of JSON.parse(JSON.stringify(s.journal)) as Change[]) apply(replayed, c);
  assert.equal(replayed.snapshotParts(), s.st.snapshotParts());
  assert.is(replayed.transcripts.get(V)!.lines.at(-1)!.revoked, true);
  const loaded = ShopState.fromParts(SHOP, s.st.limits, s.st.snapshotParts());
  assert.equal(loaded.snapshotParts(), s.st.snapshotParts());
});

t('a release takes what it names by identity, undoes exactly; an old record without ids takes the first n', () => {
  const st = new ShopState(SHOP, parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [] }] }).shops[0].limits);
  const msg = (id: string, at: number) => ({ at, xml: `<message><body id='${id}'>${id}</body></message>` });
  const [a, b, c] = [msg('A', 1), msg('B', 2), msg('C', 2)];
  for (const m of [a, b, c]) apply(st, { op: 'keep', v: V, at: m.at, xml: m.xml });
  const ids = () => st.kept.get(V)?.map((m) => findChild(parseElement(m.xml), 'body')!.attrs.id);
  apply(st, { op: 'revoke', v: V, id: 'A', by: 'visitor', at: 3 }); // A taken back while on its way with B
  assert.equal(ids(), ['B', 'C']);
  const before = st.snapshotParts();
  const undo = apply(st, { op: 'release', v: V, n: 2, relayed: [], ids: [keptId(a), keptId(b)] });
  assert.equal(ids(), ['C'], 'B released; C, never sent, still kept');
  undo();
  assert.equal(st.snapshotParts(), before, 'undone exactly');
  apply(st, { op: 'release', v: V, n: 1, relayed: [], ids: [keptId(c)] }); // by identity, wherever it is
  assert.equal(ids(), ['B']);
  apply(st, { op: 'keep', v: V, at: 4, xml: msg('D', 4).xml });
  const old = apply(st, { op: 'release', v: V, n: 1, relayed: [] }); // a journal written before ids
  assert.equal(ids(), ['D']);
  old();
  assert.equal(ids(), ['B', 'D']);
});

t('file, voice, video and product-card bodies: the kind and their URLs; text bodies only their id', () => {
  const facts = (body: string) => bodyFacts(parseElement(`<message>${body}</message>`));
  assert.equal(facts(`<body id='a' msgType='1'>hello</body>`), { id: 'a' });
  assert.equal(facts(`<body id='b'>look [obj type="image" value="${IMG}" width=1 height=1] here</body>`), { id: 'b', urls: [IMG] });
  const file = JSON.stringify({ FILEID: 'F1', FileName: 'a.pdf', FileSize: '12KB', FILEMD5: 'x', HttpUrl: 'https://f.example/a.pdf' });
  assert.equal(facts(`<body id='c' msgType='5'>${file}</body>`), { id: 'c', msgType: '5', urls: ['https://f.example/a.pdf'] });
  const voice = JSON.stringify({ HttpUrl: 'https://f.example/v.amr', Seconds: 3 });
  assert.equal(facts(`<body id='d' msgType='2'>${voice}</body>`).urls, ['https://f.example/v.amr']);
  const video = JSON.stringify({ ThumbUrl: 'https://f.example/t.jpg', FileUrl: 'https://f.example/v.mp4', Duration: '4' });
  assert.equal(facts(`<body id='e' msgType='32'>${video}</body>`).urls, ['https://f.example/t.jpg', 'https://f.example/v.mp4']);
  const card = JSON.stringify({
    data: { title: 'Hotel', price: '¥99', imageUrl: 'https://p.example/i.jpg', webDtlUrl: 'https://p.example/d' },
  });
  const cardXml = `<body id='f' msgType='11' extendInfo='${card.replace(/"/g, '&quot;')}'>[product]</body>`;
  assert.equal(facts(cardXml), { id: 'f', msgType: '11', urls: ['https://p.example/i.jpg', 'https://p.example/d'] });
  assert.equal(facts(`<body id='g' msgType='5'>{not json</body>`), { id: 'g', msgType: '5' });
});

t('the revoked id: the JSON messageId, else the body id', () => {
  const m = (x: string) => revokedId(parseElement(x));
  assert.is(m(`<message><body id='A'>{"messageId":"B"}</body></message>`), 'B');
  assert.is(m(`<message><body id='A'>[撤销一条消息]</body></message>`), 'A');
  assert.is(m(`<message><body>{"messageId":""}</body></message>`), undefined);
  assert.is(m(`<message/>`), undefined);
});

t.run();
