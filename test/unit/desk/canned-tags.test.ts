// Canned replies, tags and notes through the desk on every store. `#name` (and `/reply name`) reaches the visitor
// as the agent's message with the shop's text (placeholders filled, the agent's body id, msgType 1), journaled and
// archived as the agent's line; a group's reply overrides the shop's in its sessions; an unknown name is refused
// with the close names and changes nothing; "#1 question" stays an ordinary message. `/tag`, `/untag` and `/note`
// never reach the visitor, survive a restart (journal replay) and are archived; the archive and its stats filter
// by tag. The state changes are taken back exactly.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Action, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import { DEFAULT_LIMITS } from '../../../src/domain/shop.js';
import { Changes } from '../../../src/routing/changes.js';
import { ShopState } from '../../../src/routing/state.js';
import { findChild, parseElement, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';
import { oneShopConfig } from '../../support/one-shop.js';

const D = 'ct.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

const CANNED = {
  refund: 'Hello {visitor}, {agent} of {shop} here: your refund is on its way.',
  'refund-policy': 'Refunds take 5 days.',
  hours: 'We are open 9 to 5.',
};

async function world(backend: Backend) {
  const config = oneShopConfig(D, {
    agents: { ann: 5 },
    shop: {
      language: 'en',
      supervisors: [a('sue')],
      canned: CANNED,
      groups: [{ name: 'vip', agents: [a('ann')], products: ['gold'], canned: { hours: 'For you we are always open.' } }],
    },
  });
  const w = await deskWorld({ backend, backends, config });
  return Object.assign(w, {
    visitorSays: (v: string, id: string, text = 'hi', pid = '') =>
      w.filter(
        `<message type='consult' from='${a(v)}/web' to='${SHOP}' qchatid='4'${pid ? ` channelid='{"pid":"${pid}"}'` : ''}><body id='${id}' msgType='1'>${text}</body></message>`,
      ),
    agentSays: (id: string, text: string, visitor: string) =>
      w.filter(
        `<message type='chat' from='${a('ann')}/pc' to='${SHOP}' realto='${a(visitor)}'><body id='${id}' maType='6'>${text}</body></message>`,
      ),
  });
}

const xml = (b: Uint8Array) => parseElement(Buffer.from(b).toString());
const extra = (v: Verdict) => v.extra.map(xml);
const bodyOf = (m: XmlElement) => textOf(findChild(m, 'body')!);
const to = (stanzas: XmlElement[], jid: string) => stanzas.filter((s) => s.attrs.to === jid);
const notices = (v: Verdict, jid: string) => to(extra(v), jid).filter((m) => m.attrs.type !== 'mstat');
const refusal = (v: Verdict) =>
  v.action === Action.ACTION_REJECT ? `${v.error!.condition}/${v.error!.type}: ${v.error!.text}` : undefined;

for (const backend of BACKENDS) {
  const t = suite(`canned replies, tags and notes [${backend}]`);

  t('#name reaches the visitor as the agent’s message with the shop’s text, journaled and archived', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1');
    const sent = await w.agentSays('r1', '#Refund', 'v1');
    assert.is(sent.action, Action.ACTION_REWRITE);
    const out = xml(sent.stanza);
    assert.equal(
      { to: out.attrs.to, from: out.attrs.from, realfrom: out.attrs.realfrom, qchatid: out.attrs.qchatid },
      { to: a('v1'), from: SHOP, realfrom: a('ann'), qchatid: '5' },
    );
    const body = findChild(out, 'body')!;
    assert.is(textOf(body), 'Hello v1, ann of Shop One here: your refund is on its way.');
    assert.equal([body.attrs.id, body.attrs.msgType], ['r1', '1'], "the agent's body id, msgType 1");
    assert.ok(
      to(extra(sent), a('ann')).some((m) => m.attrs.type === 'mstat'),
      'acked to the agent',
    );
    const viaReply = await w.agentSays('r2', '/reply refund-policy', 'v1');
    assert.is(bodyOf(xml(viaReply.stanza)), 'Refunds take 5 days.');
    // A visitor whose context gives its name is called by it.
    await w.filter(
      `<message type='consult' from='${a('v3')}/web' to='${SHOP}'><body id='m3' msgType='1'>hi</body><context xmlns='urn:xmpp:consult:context:0'><name>Ann Lee</name></context></message>`,
    );
    assert.is(
      bodyOf(xml((await w.agentSays('r3', '#refund', 'v3')).stanza)),
      'Hello Ann Lee, ann of Shop One here: your refund is on its way.',
    );

    await w.restart();
    await w.online(a('ann'));
    await w.agentSays('c1', '/close', 'v1');
    await w.desk.settled();
    const [record] = await w.archive.search({ shop: SHOP, visitor: a('v1') });
    const lines = record.lines.filter((l) => l.role === 'agent').map((l) => l.text);
    assert.equal(lines, ['Hello v1, ann of Shop One here: your refund is on its way.', 'Refunds take 5 days.']);
  });

  t('a group’s reply overrides the shop’s in its sessions; /canned lists what the agent may send', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hi', 'gold'); // routed to the vip group
    await w.visitorSays('v2', 'm2'); // any agent
    assert.is(bodyOf(xml((await w.agentSays('r1', '#hours', 'v1')).stanza)), 'For you we are always open.');
    assert.is(bodyOf(xml((await w.agentSays('r2', '#hours', 'v2')).stanza)), 'We are open 9 to 5.');
    const [list] = notices(await w.agentSays('l1', '/canned', 'v1'), a('ann'));
    assert.equal(bodyOf(list).split('\n'), [
      '3 canned replies; send #name to use one:',
      '#hours — For you we are always open.',
      '#refund — Hello {visitor}, {agent} of {shop} here: your refund is on …', // long texts cut
      '#refund-policy — Refunds take 5 days.',
    ]);
  });

  t('an unknown name is refused with the close ones and changes nothing; "#1 question" is an ordinary message', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1');
    const before = w.desk.view.sessions(SHOP)[0];
    const refused = await w.agentSays('r1', '#refnd', 'v1');
    assert.is(refusal(refused), `item-not-found/cancel: ${SHOP} has no canned reply #refnd; did you mean #refund?`);
    assert.equal(extra(refused), [], 'nothing sent');
    assert.is(refusal(await w.agentSays('r2', '#ref', 'v1'))?.includes('#refund, #refund-policy'), true, 'prefix matches');
    assert.is(refusal(await w.agentSays('r3', '/reply', 'v1'))?.startsWith('bad-request/modify: /reply takes one'), true);
    assert.equal(w.desk.view.sessions(SHOP)[0], before, 'the session did not change');
    for (const [id, text] of [
      ['o1', '#1 question'],
      ['o2', '#2'],
      ['o3', '# refund'],
    ]) {
      const v = await w.agentSays(id, text, 'v1');
      assert.is(v.action, Action.ACTION_REWRITE, text);
      assert.is(bodyOf(xml(v.stanza)), text, `${text} relayed as written`);
    }
  });

  t('/tag, /untag and /note never reach the visitor, survive a restart and are archived; search and stats by tag', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.online(a('sue'));
    await w.visitorSays('v1', 'm1');
    await w.visitorSays('v2', 'm2');
    await w.filter(`<message type='chat' from='${a('sue')}/pc' to='${SHOP}'><body id='s1'>/monitor v1</body></message>`);
    const tagged = await w.agentSays('t1', '/tag VIP refund', 'v1');
    assert.is(tagged.action, Action.ACTION_DROP);
    assert.equal(to(extra(tagged), a('v1')), [], 'the visitor gets nothing');
    assert.is(bodyOf(notices(tagged, a('ann'))[0]), `Tags of the conversation with ${a('v1')}: vip, refund`);
    const noted = await w.agentSays('n1', '/note wants the money back by Friday', 'v1');
    assert.equal(to(extra(noted), a('v1')), [], 'a note never reaches the visitor');
    assert.is(bodyOf(notices(noted, a('ann'))[0]), `Note kept (${a('v1')} does not see it).`);
    assert.is(bodyOf(notices(noted, a('sue'))[0]), `[${a('ann')} note] wants the money back by Friday`, 'the watching supervisor');
    assert.is(refusal(await w.agentSays('t2', '/tag bad,label', 'v1'))?.startsWith('bad-request/modify: bad,label is not a tag'), true);
    await w.agentSays('t3', '/tag vip', 'v2');

    await w.restart();
    await w.online(a('ann'));
    const untagged = await w.agentSays('u1', '/untag refund', 'v1');
    assert.is(bodyOf(notices(untagged, a('ann'))[0]), `Tags of the conversation with ${a('v1')}: vip`, 'tags replayed from the journal');
    await w.agentSays('t4', '/tag late', 'v1');
    await w.agentSays('u2', '/untag', 'v2'); // all of them
    await w.agentSays('c1', '/close', 'v1');
    await w.agentSays('c2', '/close', 'v2');
    await w.desk.settled();

    const [one] = await w.archive.search({ shop: SHOP, visitor: a('v1') });
    assert.equal(one.tags, ['vip', 'late']);
    const note = one.lines.find((l) => l.role === 'note');
    assert.equal(note && { who: note.who, text: note.text }, { who: a('ann'), text: 'wants the money back by Friday' });
    const [two] = await w.archive.search({ shop: SHOP, visitor: a('v2') });
    assert.equal(two.tags, []);
    assert.equal(
      (await w.archive.search({ shop: SHOP, tag: 'vip' })).map((r) => r.visitor),
      [a('v1')],
    );
    assert.equal(await w.archive.search({ shop: SHOP, tag: 'refund' }), [], 'untagged before the close');
    assert.equal((await w.archive.get(one.id))?.tags, ['vip', 'late']);
    const stats = await w.archive.stats({ shop: SHOP, tag: 'late' });
    assert.is(stats.find((s) => s.agent === null)?.sessions, 1);
    assert.is((await w.archive.stats({ shop: SHOP })).find((s) => s.agent === null)?.sessions, 2);
  });

  t.run();
}

const pure = suite('tags and notes: apply and undo');
pure('tag, untag and note are taken back exactly', () => {
  const st = new ShopState(SHOP, DEFAULT_LIMITS);
  const w = new Changes(st);
  w.do({ op: 'open', v: 'v1', agent: 'ann', at: 1 });
  const snap = () => JSON.stringify(st.snapshotParts());
  const opened = snap();
  const w2 = new Changes(st);
  w2.do({ op: 'tag', v: 'v1', label: 'vip', on: true });
  w2.do({ op: 'tag', v: 'v1', label: 'late', on: true });
  w2.do({ op: 'note', v: 'v1', who: 'ann', at: 2, text: 'n' });
  w2.do({ op: 'tag', v: 'v1', label: 'vip', on: false });
  assert.equal(st.transcripts.get('v1')?.tags, ['late']);
  assert.equal(
    st.transcripts.get('v1')?.lines.map((l) => l.role),
    ['note'],
  );
  w2.revert();
  assert.is(snap(), opened);
  const w3 = new Changes(st);
  w3.do({ op: 'tag', v: 'v1', label: 'vip', on: true });
  const tagged = snap();
  const w4 = new Changes(st);
  w4.do({ op: 'tag', v: 'v1', label: 'vip', on: false });
  assert.is(st.transcripts.get('v1')?.tags, undefined, 'the last tag gone: none');
  w4.revert();
  assert.is(snap(), tagged);
});
pure('a snapshot keeps the tags and notes of open sessions', () => {
  const st = new ShopState(SHOP, DEFAULT_LIMITS);
  const w = new Changes(st);
  w.do({ op: 'open', v: 'v1', agent: 'ann', at: 1 });
  w.do({ op: 'tag', v: 'v1', label: 'vip', on: true });
  w.do({ op: 'note', v: 'v1', who: 'ann', at: 2, text: 'call back' });
  const back = ShopState.fromParts(SHOP, DEFAULT_LIMITS, st.snapshotParts(50));
  assert.equal(back.transcripts.get('v1'), st.transcripts.get('v1'));
  assert.equal(back.transcripts.get('v1')?.tags, ['vip']);
});
pure.run();

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
