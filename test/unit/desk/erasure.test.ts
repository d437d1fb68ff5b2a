// Erasure and export of a visitor on the desk, on memory, PGlite and PostgreSQL: after forget, the visitor's JID and
// every text it sent or got are nowhere in the store (the journal and snapshot read back from the store itself, the
// archive rows), its open session is closed with a notice to the agent, the other visitor keeps its session, and a
// restarted desk knows nothing of it. The export before lists its live session and its archived one.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { holds } from '../../../src/routing/forget.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'er.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();
const SECRETS = ['first-secret', 'agent-secret', 'second-secret'];

async function world(backend: Backend) {
  const config = parseConfig({
    systemJid: a('admin'),
    archive: { ratingWindowSec: 600 },
    shops: [{ jid: SHOP, name: 'Shop One', language: 'en', agents: [{ jid: a('ann'), maxSessions: 5 }] }],
  });
  const w = await deskWorld({ backend, backends, config });
  const visitorSays = (visitor: string, id: string, text: string) =>
    w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}' msgType='1'>${text}</body></message>`);
  const agentSays = (id: string, text: string, realto: string) =>
    w.filter(`<message type='chat' from='${a('ann')}/pc' to='${SHOP}' realto='${a(realto)}'><body id='${id}'>${text}</body></message>`);
  return { w, visitorSays, agentSays };
}

/** Everything the store holds of the shop's journal and of the archive, as one text. */
async function stored(backend: Backend, w: Awaited<ReturnType<typeof world>>['w']): Promise<string> {
  if (backend === 'memory') {
    const loaded = await w.journal.load(SHOP);
    return JSON.stringify([loaded, await w.archive.search({})]);
  }
  const db = await backends.driver(backend);
  const rows = [
    ...(await db.query(`SELECT body FROM journal`)),
    ...(await db.query(`SELECT body FROM snapshot_parts`)),
    ...(await db.query(`SELECT visitor, body FROM archive`)),
  ];
  return JSON.stringify(rows);
}

for (const backend of BACKENDS) {
  const t = suite(`erasure of a visitor [${backend}]`);

  t('forget leaves no trace in the journal, the snapshot or the archive; the other visitor keeps its session', async () => {
    const { w, visitorSays, agentSays } = await world(backend);
    await w.online(a('ann'));
    await visitorSays('v1', 'm1', SECRETS[0]);
    await agentSays('r1', SECRETS[1], 'v1');
    await w.desk.closeSession(SHOP, a('v1'), 'agent');
    await w.desk.settled();
    await visitorSays('v1', 'm2', SECRETS[2]); // back: a new session, open
    await visitorSays('v2', 'o1', 'other-visitor-text');
    await w.desk.settled();
    assert.is((await w.archive.search({ visitor: a('v1') })).length, 1);

    const exported = await w.desk.erasure.export(a('v1'), w.now());
    assert.equal([exported.shops.map((s) => s.shop), exported.shops[0].session !== undefined, exported.archive.length], [[SHOP], true, 1]);
    assert.ok(JSON.stringify(exported).includes(SECRETS[2]));
    assert.ok(JSON.stringify(exported.archive).includes(SECRETS[1]));
    const before = await stored(backend, w);
    for (const s of [a('v1'), ...SECRETS]) assert.ok(before.includes(s), `the store held ${s} before`);

    w.takeSent();
    const result = await w.desk.erasure.forget(a('v1'), false);
    assert.equal(
      { ...result, ejabberd: 'error' in result.ejabberd },
      { visitor: a('v1'), shops: [SHOP], heldElsewhere: [], archived: 1, ejabberd: true, complete: false },
    );
    const sent = w.takeSent();
    assert.equal(
      sent.map((m) => m.attrs.to),
      [a('ann')],
      'only the agent is told',
    );

    const after = await stored(backend, w);
    for (const s of [a('v1'), ...SECRETS]) assert.not.ok(after.includes(s), `the store holds ${s} no more`);
    assert.ok(after.includes(a('v2')) && after.includes('other-visitor-text'), 'the other visitor is still there');
    assert.equal(await w.archive.search({ visitor: a('v1') }), []);
    assert.equal((await w.desk.erasure.export(a('v1'), w.now())).shops, []);

    await w.restart();
    const st = w.desk.shops.state(SHOP)!;
    assert.not.ok(holds(st, a('v1')));
    assert.ok(st.sessions.has(a('v2')));
    // Forgetting again is harmless (idempotent): nothing left to erase.
    const again = await w.desk.erasure.forget(a('v1'), false);
    assert.equal([again.shops, again.archived], [[], 0]);
  });

  t('a visitor waiting in the queue with kept messages is erased, and the queue count follows', async () => {
    const { w, visitorSays } = await world(backend);
    await visitorSays('v3', 'k1', 'kept-secret'); // no agent online: it waits, its message kept
    await w.desk.settled();
    assert.is(w.desk.shops.state(SHOP)!.queue.size, 1);
    await w.desk.erasure.forget(a('v3'), false);
    const st = w.desk.shops.state(SHOP)!;
    assert.equal([st.queue.size, st.waitingFor('')], [0, 0]);
    const after = await stored(backend, w);
    assert.not.ok(after.includes('kept-secret') || after.includes(a('v3')));
  });

  t.run();
}

const teardown = suite('teardown');
teardown('close backends', async () => {
  await backends.close();
});
teardown.run();
