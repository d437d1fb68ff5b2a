// QChat revokes and photos through the Desk on every store (memory, PGlite, PostgreSQL): the revoke mark is journaled,
// so a restarted sidecar (journal replay) still knows the line was taken back, and the archive shows it revoked with
// the photo's URL.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Action, SessionEvent_Kind as Kind } from '../../../src/gen/consult/v1/filter.js';
import { findChild, parseElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const ANN = `ann@${D}`;
const V = `v1@${D}`;
const IMG = 'https://img.example.com/p/1.png';
const backends = new Backends();

async function world(backend: Backend) {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'Shop One', agents: [{ jid: ANN, maxSessions: 5 }] }] });
  const w = await deskWorld({ backend, backends, config });
  return Object.assign(w, {
    photo: (id: string) =>
      w.filter(
        `<message type='consult' from='${V}/web' to='${SHOP}' qchatid='4'><body id='${id}' msgType='3' maType='6'>[obj type="image" value="${IMG}" width=10 height=20]</body></message>`,
      ),
    revoke: (id: string) =>
      w.filter(
        `<message type='revoke' from='${V}/web' to='${SHOP}' qchatid='4'><body id='${id}' msgType='-2'>{"messageId":"${id}","message":"revoke a message","fromId":"${V}"}</body></message>`,
      ),
  });
}

for (const backend of BACKENDS) {
  const t = suite(`message kinds on the desk [${backend}]`);

  t('a revoke is relayed as a revoke, its mark survives a restart, and the archive shows it with the photo URL', async () => {
    const w = await world(backend);
    await w.online(ANN);
    await w.photo('P1');
    const v = await w.revoke('P1');
    assert.is(v.action, Action.ACTION_REWRITE);
    const relayed = parseElement(Buffer.from(v.stanza!).toString());
    assert.equal([relayed.attrs.type, relayed.attrs.to, findChild(relayed, 'body')!.attrs.id], ['revoke', ANN, 'P1']);
    await w.restart(); // a new desk replays the journal
    const line = w.desk.shops.state(SHOP)!.transcripts.get(V)!.lines[0];
    assert.equal([line.id, line.revoked, line.urls], ['P1', true, [IMG]]);
    await w.filter(`<message type='chat' from='${ANN}/pc' to='${SHOP}' realto='${V}'><body id='c1'>/close</body></message>`);
    await w.desk.settled();
    const [r] = await w.archive.search({ shop: SHOP });
    assert.equal(r.lines, [
      {
        at: w.now(),
        role: 'visitor',
        who: V,
        text: `[obj type="image" value="${IMG}" width=10 height=20]`,
        id: 'P1',
        msgType: '3',
        urls: [IMG],
        revoked: true,
      },
    ]);
  });

  t('a revoke of a message on its way while the visitor is back in the queue loses nothing else of it', async () => {
    const w = await world(backend);
    const text = (id: string) =>
      w.filter(`<message type='consult' from='${V}/web' to='${SHOP}' qchatid='4'><body id='${id}' msgType='1'>${id}</body></message>`);
    await text('T1');
    await text('T2'); // nobody online: both kept, V waits
    w.outbox.hold();
    await w.event(Kind.PRESENCE_SET, `${ANN}/pc`);
    await w.outbox.whenHeld(); // T1 and T2 are on their way to ann, unacknowledged
    await text('T3'); // kept behind them
    await w.offline(ANN);
    await w.desk.tick(); // ann is gone...
    w.advance(61_000);
    await w.desk.tick(); // ...past the grace period: V waits in the queue again, T1..T3 still kept
    assert.equal(
      w.desk.view.queue(SHOP).map((q) => [q.visitor, q.kept]),
      [[V, 3]],
    );
    await w.revoke('T1'); // taken back while on its way
    const kept = () => (w.desk.shops.state(SHOP)!.kept.get(V) ?? []).map((m) => findChild(parseElement(m.xml), 'body')!.attrs.id);
    assert.equal(kept(), ['T2', 'T3']);
    w.outbox.release(); // the shim acknowledges T1 and T2
    await w.desk.settled();
    assert.equal(kept(), ['T3'], 'T2 released, T3 still waits for an agent');
    await w.restart();
    assert.equal(kept(), ['T3'], 'the same after a journal replay');
  });

  t.run();
}

const teardown = suite('teardown');
teardown('close backends', async () => {
  await backends.close();
});
teardown.run();
