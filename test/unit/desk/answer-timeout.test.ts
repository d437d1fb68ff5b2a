// Answer or move on through the Desk on memory, PGlite and PostgreSQL: driven through the gRPC handlers with a
// hand-moved clock. A silent agent loses the visitor to the next agent on a tick, once; the clock and the misses
// survive a restart (journal and snapshot); misses in a row set the agent away in the store until it sets itself back;
// the misses show in /sessions, the admin view and the metrics.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import type { ArchiveRecord } from '../../../src/domain/archive.js';
import { Action, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import type { DeskMetrics } from '../../../src/desk/ports.js';
import { findChild, parseElement, textOf, type XmlElement } from '../../../src/xmpp/xml.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const TIMEOUT_MS = 30_000;
const backends = new Backends();

/** Counts what the desk reports, as a scraper of /metrics would see it across restarts. */
class CountingMetrics implements DeskMetrics {
  missed = 0;
  sessionClosed(_r: ArchiveRecord): void {}
  rated(): void {}
  missedChats(shop: string, n: number): void {
    assert.is(shop, SHOP);
    this.missed += n;
  }
}

async function world(backend: Backend, o: { maxMissed?: number } = {}) {
  const config = parseConfig({
    systemJid: a('admin'),
    timers: { agentReminderSec: 120, idleCloseSec: 1800, offlineGraceSec: 60, tickSec: 5 },
    shops: [
      {
        jid: SHOP,
        name: 'Shop One',
        language: 'en',
        answerTimeoutSec: TIMEOUT_MS / 1000,
        ...(o.maxMissed ? { maxMissedChats: o.maxMissed } : {}),
        agents: ['ann', 'bob'].map((n) => ({ jid: a(n), maxSessions: 5 })),
      },
    ],
  });
  const metrics = new CountingMetrics();
  const w = await deskWorld({ backend, backends, config, metrics });
  return Object.assign(w, {
    metrics,
    visitorSays: (visitor: string, id: string, text = 'hi') =>
      w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}' msgType='1'>${text}</body></message>`),
    agentSays: (agent: string, id: string, text: string, realto?: string) =>
      w.filter(
        `<message type='chat' from='${a(agent)}/pc' to='${SHOP}'${realto ? ` realto='${a(realto)}'` : ''}><body id='${id}'>${text}</body></message>`,
      ),
    agentOf: (visitor: string) => w.desk.view.sessions(SHOP).find((s) => s.visitor === a(visitor))?.agent,
  });
}

const xml = (b: Uint8Array) => parseElement(Buffer.from(b).toString());
const bodyText = (m: XmlElement) => textOf(findChild(m, 'body')!);
const byTo = (stanzas: XmlElement[], to: string) => stanzas.filter((s) => s.attrs.to === to);
const assignedTo = (v: Verdict) => (v.action === Action.ACTION_REWRITE ? xml(v.stanza).attrs.to : undefined);

for (const backend of BACKENDS) {
  const t = suite(`answer or move on [${backend}]`);

  t('a silent agent loses the visitor on a tick: the next agent gets the history, the visitor one notice, ann is told', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.online(a('bob'));
    assert.is(assignedTo(await w.visitorSays('v1', 'm1', 'where is my parcel?')), a('ann'));
    w.takeSent();
    w.advance(TIMEOUT_MS - 1);
    await w.tick();
    assert.equal(w.takeSent(), [], 'not yet');
    w.advance(1);
    await w.tick();
    const sent = w.takeSent();
    assert.is(w.agentOf('v1'), a('bob'));
    assert.equal(byTo(sent, a('v1')).map(bodyText), [`Agent ${a('ann')} could not answer in time; agent ${a('bob')} will help you now.`]);
    assert.equal(byTo(sent, a('ann')).map(bodyText), [
      `You did not answer ${a('v1')} within 30 s; the conversation now belongs to ${a('bob')}.`,
    ]);
    const toBob = byTo(sent, a('bob'));
    assert.match(bodyText(toBob[0]), `(reason: ${a('ann')} did not answer within 30 s)`);
    assert.equal(toBob.slice(1).map(bodyText), ['where is my parcel?']);
    assert.ok(findChild(toBob[1], 'delay'), 'marked as history');
    assert.is(w.metrics.missed, 1);
    await w.tick();
    assert.equal(w.takeSent(), [], 'moved once');
    assert.is(w.metrics.missed, 1);
    // bob answers: the reply reaches the visitor and bob's clock stops.
    assert.is(assignedTo(await w.agentSays('bob', 'b1', 'on its way', 'v1')), a('v1'));
    w.advance(TIMEOUT_MS);
    await w.tick();
    assert.is(w.agentOf('v1'), a('bob'));
  });

  t('a restart keeps the running clock and the misses: the clock fires once after it, nothing doubled', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.online(a('bob'));
    await w.visitorSays('v1', 'm1');
    w.advance(TIMEOUT_MS / 2);
    await w.restart();
    w.takeSent();
    w.advance(TIMEOUT_MS / 2);
    await w.tick();
    const sent = w.takeSent();
    assert.is(w.agentOf('v1'), a('bob'));
    assert.is(byTo(sent, a('v1')).length, 1);
    await w.restart();
    await w.tick();
    assert.equal(w.takeSent(), [], 'replaying the move does not move or tell anyone again');
    assert.is(w.agentOf('v1'), a('bob'));
    assert.is(w.metrics.missed, 1, 'counted once, by the live decision');
    const view = w.desk.view.missedOf(SHOP, a('ann'));
    assert.equal(view, { inRow: 1, total: 1 }, 'the misses came back from the journal');
  });

  t('misses in a row set the agent away in the store; not assigned until it sets itself back with /status', async () => {
    const w = await world(backend, { maxMissed: 2 });
    await w.online(a('ann'));
    await w.online(a('bob'));
    await w.visitorSays('v1', 'm1'); // ann
    w.advance(TIMEOUT_MS);
    await w.tick(); // to bob
    await w.agentSays('bob', 'b1', 'hello', 'v1');
    assert.is(assignedTo(await w.visitorSays('v2', 'm2')), a('ann'));
    w.takeSent();
    w.advance(TIMEOUT_MS);
    await w.tick();
    const toAnn = byTo(w.takeSent(), a('ann')).map(bodyText);
    assert.is(toAnn.length, 2);
    assert.match(toAnn[1], 'You missed 2 chats in a row, so your status is now away');
    assert.is((await w.store.getAgent(a('ann')))!.status, 'away');
    assert.is(w.presence.status(a('ann')), 'away');
    assert.is(assignedTo(await w.visitorSays('v3', 'm3')), a('bob'), 'ann is away');
    const info = await w.agentSays('ann', 's1', '/sessions');
    const answer = xml(info.extra[1]);
    assert.equal([findChild(answer, 'info')!.attrs.missed, findChild(answer, 'info')!.attrs.missedInRow], ['2', '0']);
    assert.match(bodyText(answer), '2 missed (0 in a row)');
    await w.agentSays('ann', 's2', '/status standard');
    assert.is((await w.store.getAgent(a('ann')))!.status, 'standard');
    assert.is(assignedTo(await w.visitorSays('v4', 'm4')), a('ann'), 'back to taking chats');
    assert.is(w.metrics.missed, 2);
  });

  t('nobody else can take it: the session stays and the agent is reminded', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1');
    w.takeSent();
    w.advance(120_000);
    await w.tick();
    const sent = w.takeSent();
    assert.is(w.agentOf('v1'), a('ann'));
    assert.equal(
      sent.map((m) => [m.attrs.to, bodyText(m)]),
      [[a('ann'), `A visitor is waiting for your reply: ${a('v1')} has waited 120 s.`]],
    );
    assert.is(w.metrics.missed, 0);
  });

  t.run();
}

const teardown = suite('teardown');
teardown.after(() => backends.close());
teardown('stores closed', () => {});
teardown.run();
