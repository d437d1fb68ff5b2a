// Archive and satisfaction on the desk: a closed session's whole transcript reaches the archive
// store (memory, PGlite, PostgreSQL) once the close is durable, survives a restart before it was
// written, is searchable and rated; ratings and timings make the stats; retention deletes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { toCsv } from '../../../src/admin/archive-routes.js';
import { parseConfig } from '../../../src/domain/config.js';
import { Action } from '../../../src/gen/consult/v1/filter.js';
import type { SqlStore } from '../../../src/storage/sql-store.js';
import { findChild } from '../../../src/xmpp/xml.js';
import { Changes } from '../../../src/routing/changes.js';
import { ShopState } from '../../../src/routing/state.js';
import { DEFAULT_LIMITS } from '../../../src/domain/shop.js';
import type { ArchivePosition } from '../../../src/domain/archive.js';
import { BACKENDS, Backends, deskWorld, type Backend } from '../../support/desk.js';
import { closedSession } from '../../support/archive.js';

const D = 'cs.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

async function world(backend: Backend, o: { transcriptPerSession?: number; historyPerSession?: number } = {}) {
  const config = parseConfig({
    systemJid: a('admin'),
    archive: { retentionDays: 30, ratingWindowSec: 600 },
    shops: [
      {
        jid: SHOP,
        name: 'Shop One',
        limits: { transcriptPerSession: o.transcriptPerSession ?? 1000, historyPerSession: o.historyPerSession ?? 20 },
        agents: [
          { jid: a('ann'), maxSessions: 5 },
          { jid: a('bob'), maxSessions: 5 },
        ],
      },
    ],
  });
  const w = await deskWorld({ backend, backends, config });
  return Object.assign(w, {
    visitorSays: (visitor: string, id: string, text: string) =>
      w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}' msgType='1'>${text}</body></message>`),
    agentSays: (agent: string, id: string, text: string, realto: string) =>
      w.filter(`<message type='chat' from='${a(agent)}/pc' to='${SHOP}' realto='${a(realto)}'><body id='${id}'>${text}</body></message>`),
    archived: () => w.archive.search({ shop: SHOP }),
  });
}

const texts = (lines: { role: string; text: string }[]) => lines.map((l) => `${l.role}:${l.text}`);

for (const backend of BACKENDS) {
  const archive = suite(`archive and ratings [${backend}]`);

  archive('a closed session is archived with its whole transcript, agents, transfer and close reason', async () => {
    const w = await world(backend, { historyPerSession: 2 });
    await w.online(a('ann'));
    await w.online(a('bob'));
    w.advance(1000);
    await w.visitorSays('v1', 'm1', 'hello'); // ann (least busy, first)
    w.advance(4000);
    await w.agentSays('ann', 'r1', 'hi, how can I help?', 'v1');
    for (let i = 0; i < 4; i++) await w.visitorSays('v1', `m${i + 2}`, `more ${i}`);
    await w.desk.transferSession(SHOP, a('v1'), a('bob'), 'billing');
    await w.agentSays('bob', 'r2', 'bob here', 'v1');
    w.advance(1000);
    await w.agentSays('bob', 'c1', '/close', 'v1');
    await w.desk.settled();
    const [r] = await w.archived();
    assert.ok(r, 'archived');
    assert.equal(
      texts(r.lines),
      [
        'visitor:hello',
        'agent:hi, how can I help?',
        'visitor:more 0',
        'visitor:more 1',
        'visitor:more 2',
        'visitor:more 3',
        'system:transfer ann@cs.test -> bob@cs.test (billing)',
        'agent:bob here',
      ],
      'all of it, beyond the 2 messages of history kept for transfers',
    );
    assert.equal([r.shop, r.visitor, r.agent, r.agents, r.closeReason], [SHOP, a('v1'), a('bob'), [a('ann'), a('bob')], 'agent']);
    assert.equal(
      r.transfers.map((t) => [t.from, t.to, t.reason]),
      [[a('ann'), a('bob'), 'billing']],
    );
    assert.is(r.firstResponseMs, 4000);
    assert.is(r.endedAt - r.startedAt, 5000);
    assert.is(r.lines[1].who, a('ann'));
    assert.equal((await w.archive.search({ agent: a('ann') })).length, 1, 'found by any agent who served');
    assert.equal((await w.archive.search({ visitor: a('v2') })).length, 0);
    assert.equal((await w.archive.search({ from: w.now() + 1 })).length, 0, 'ended before the range');
    assert.equal((await w.archive.search({ to: r.startedAt - 1 })).length, 0, 'started after the range');
  });

  archive('a rating 1-5 within the window is stored with the session and acked, not routed; later text is a new consult', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello');
    w.takeSent();
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    const sent = w.takeSent();
    const request = sent.find((m) => findChild(m, 'rating'));
    assert.ok(request, 'rating request sent');
    assert.equal([request!.attrs.to, request!.attrs.qchatid, findChild(request!, 'body')!.attrs.msgType], [a('v1'), '5', '15']);
    const id = findChild(request!, 'rating')!.attrs.session;
    const v = await w.visitorSays('v1', 'rate1', ' 4 ');
    assert.is(v.action, Action.ACTION_DROP, 'not routed to an agent');
    assert.is(w.desk.view.sessions(SHOP).length, 0, 'no new session');
    const [ackd, thanks] = v.extra.map((x) => Buffer.from(x).toString());
    assert.match(ackd, "stat='sent'");
    assert.match(thanks, '4');
    await w.desk.settled();
    const [r] = await w.archived();
    assert.equal([r.id, r.rating], [id, 4]);
    const again = await w.visitorSays('v1', 'rate2', '5');
    assert.is(again.action, Action.ACTION_REWRITE, 'one rating per session: a second "5" is a new consult');
  });

  archive('a reply past the rating window is an ordinary message', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hello');
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    w.advance(601_000);
    assert.is((await w.visitorSays('v1', 'late', '5')).action, Action.ACTION_REWRITE);
    await w.desk.settled();
    assert.is((await w.archived()).filter((r) => r.rating !== undefined).length, 0);
  });

  if (backend !== 'memory')
    archive('archive store down at the close: the journal keeps the record, and after a restart the desk writes it', async () => {
      const w = await world(backend);
      const db = (w.store as SqlStore).db;
      await w.online(a('ann'));
      await w.visitorSays('v1', 'm1', 'kept through a restart');
      await db.query('ALTER TABLE archive RENAME TO archive_down'); // every archive write fails now
      try {
        await w.desk.closeSession(SHOP, a('v1'), 'admin');
        await w.visitorSays('v1', 'rate', '2');
        await w.desk.settled();
      } finally {
        await db.query('ALTER TABLE archive_down RENAME TO archive');
      }
      assert.is((await w.archived()).length, 0, 'not written while the table was away');
      await w.restart(); // a new desk: what it knows comes from the journal
      await w.desk.tick();
      await w.desk.settled();
      const [r] = await w.archived();
      assert.ok(r, 'written after the restart');
      assert.equal([texts(r.lines), r.rating], [['visitor:kept through a restart'], 2]);
    });

  archive('the transcript is bounded per shop: the oldest lines go, counted', async () => {
    const w = await world(backend, { transcriptPerSession: 10 });
    await w.online(a('ann'));
    for (let i = 0; i < 15; i++) await w.visitorSays('v1', `m${i}`, `n${i}`);
    await w.desk.closeSession(SHOP, a('v1'), 'idle');
    await w.desk.settled();
    const [r] = await w.archived();
    assert.equal([r.lines.length, r.omitted, r.lines[0].text, r.closeReason], [10, 5, 'n5', 'idle']);
  });

  archive('stats: CSAT, first response, handle time and queue wait per shop and per agent; retention purges', async () => {
    const w = await world(backend);
    await w.online(a('ann'));
    await w.visitorSays('v1', 'm1', 'hi');
    w.advance(2000);
    await w.agentSays('ann', 'r1', 'yes?', 'v1');
    await w.desk.closeSession(SHOP, a('v1'), 'admin');
    await w.visitorSays('v1', 'x', '5');
    await w.visitorSays('v2', 'm2', 'hi'); // ann again
    w.advance(4000);
    await w.agentSays('ann', 'r2', 'yes?', 'v2');
    await w.desk.closeSession(SHOP, a('v2'), 'admin');
    await w.visitorSays('v2', 'y', '2');
    await w.desk.settled();
    const stats = await w.archive.stats({ shop: SHOP });
    const shop = stats.find((s) => s.agent === null)!;
    const ann = stats.find((s) => s.agent === a('ann'))!;
    assert.equal([shop.sessions, shop.rated, shop.csat, shop.avgRating, shop.avgFirstResponseMs], [2, 2, 0.5, 3.5, 3000]);
    assert.equal([ann.sessions, ann.avgHandleMs, ann.avgQueueWaitMs], [2, 3000, 0]);
    w.advance(31 * 86_400_000);
    await w.desk.tick();
    assert.is((await w.archived()).length, 0, 'past retentionDays: deleted');
  });

  archive('searched a page at a time: newest first, ties by id, each session on exactly one page', async () => {
    const w = await world(backend);
    const record = (n: number, endedAt: number) =>
      closedSession({ id: `s${n}`, shop: SHOP, visitor: a(`v${n}`), agent: a('ann'), endedAt });
    // Seven sessions, three of them ending at the same moment: a page boundary falls among them.
    await w.archive.put([1, 2, 3, 4, 5, 6, 7].map((n) => record(n, n >= 3 && n <= 5 ? 5000 : n * 1000)));
    const pages: string[][] = [];
    let after: ArchivePosition | undefined;
    for (;;) {
      const page = await w.archive.search({ shop: SHOP, after, limit: 2 });
      if (page.length === 0) break;
      pages.push(page.map((r) => r.id));
      after = page[page.length - 1];
    }
    assert.equal(pages, [['s7', 's6'], ['s5', 's4'], ['s3', 's2'], ['s1']]);
    assert.equal(
      (await w.archive.search({ shop: SHOP, after: { endedAt: 5000, id: 's4' }, limit: 10 })).map((r) => r.id),
      ['s3', 's2', 's1'],
      'after a position: only what follows it',
    );
  });

  archive.run();
}

const pure = suite('archive state: snapshot and undo');
const plain = (st: ShopState) =>
  JSON.parse(
    JSON.stringify({
      sessions: [...st.sessions],
      queue: [...st.queue],
      queueGroup: [...st.queueGroup],
      waiting: [...st.waiting],
      transcripts: [...st.transcripts],
      unarchived: [...st.unarchived],
      ratingDue: [...st.ratingDue],
      history: [...st.history],
      kept: [...st.kept],
    }),
  );
function busy(st: ShopState): Changes {
  const w = new Changes(st);
  w.do({ op: 'enqueue', v: 'v1', at: 1, g: 'tv' });
  w.do({ op: 'keep', v: 'v1', at: 1, xml: '<m/>', text: 'waiting' });
  w.do({ op: 'dequeue', v: 'v1' });
  w.do({ op: 'open', v: 'v1', agent: 'ann', at: 2, g: 'tv' });
  w.do({ op: 'release', v: 'v1', n: 1, relayed: [{ at: 1, xml: '<m/>' }] });
  for (let i = 0; i < 5; i++)
    w.do({ op: 'said', v: 'v1', by: i % 2 ? 'agent' : 'visitor', at: 3 + i, xml: `<m i='${i}'/>`, text: `t${i}` });
  w.do({ op: 'move', v: 'v1', agent: 'bob', at: 9, reason: 'why' });
  w.do({ op: 'close', v: 'v1', stickyUntil: 100, at: 10, reason: 'agent', rateUntil: 50 });
  w.do({ op: 'rate', v: 'v1', score: 4, at: 11 });
  w.do({ op: 'open', v: 'v2', agent: 'ann', at: 12 });
  w.do({ op: 'said', v: 'v2', by: 'visitor', at: 13, xml: '<m/>', text: 'x'.repeat(300) });
  w.do({ op: 'enqueue', v: 'v3', at: 14 });
  return w;
}

pure('a snapshot in small parts rebuilds transcripts, unarchived records, rating offers and group queues', () => {
  const st = new ShopState(SHOP, { ...DEFAULT_LIMITS, transcriptPerSession: 4 });
  busy(st);
  const parts = st.snapshotParts(200);
  assert.ok(parts.length > 5, `${parts.length} parts`);
  const back = ShopState.fromParts(SHOP, st.limits, parts);
  assert.equal(plain(back), plain(st));
  const [, u] = [...st.unarchived][0];
  assert.ok(u.kind === 'session' && u.record.lines.length === 4 && u.record.omitted === 3, 'bounded to 4 lines, 3 omitted');
});

pure('every change is taken back exactly (a failed commit leaves no trace)', () => {
  const st = new ShopState(SHOP, { ...DEFAULT_LIMITS, transcriptPerSession: 4 });
  const before = plain(st);
  busy(st).revert();
  assert.equal(plain(st), before);
  const w = new Changes(st);
  w.do({ op: 'open', v: 'v1', agent: 'ann', at: 1 });
  const opened = plain(st);
  const w2 = new Changes(st);
  for (let i = 0; i < 6; i++) w2.do({ op: 'said', v: 'v1', by: 'visitor', at: 2 + i, xml: '<m/>', text: `t${i}` });
  w2.revert();
  assert.equal(plain(st), opened, 'lines dropped past the cap come back');
});

pure.run();

const csv = suite('archive CSV export');
csv('one row per line, quoted, formulas defused', () => {
  const out = toCsv([
    {
      id: 'x1',
      shop: SHOP,
      visitor: a('v1'),
      agent: a('ann'),
      agents: [a('ann')],
      group: '',
      startedAt: 0,
      endedAt: 1000,
      queueWaitMs: 0,
      firstResponseMs: 500,
      closeReason: 'agent',
      transfers: [],
      lines: [
        { at: 0, role: 'visitor', who: a('v1'), text: 'a, "b"\nc' },
        { at: 500, role: 'agent', who: a('ann'), text: '=HYPERLINK()' },
      ],
      omitted: 0,
      rating: 5,
      tags: ['vip', 'late'],
    },
  ]).split('\r\n');
  assert.is(out[0].split(',').length, 17);
  assert.ok(out[0].endsWith(',text,tags') && out[2].endsWith(',vip late'), 'the tags last, space-joined');
  assert.is(out.length, 4);
  assert.match(out[1], '"a, ""b""\nc"');
  assert.match(out[2], "'=HYPERLINK()");
  assert.match(out[1], ',5,0,500,');
});
csv.run();

const teardown = suite('teardown');
teardown('close backends', async () => {
  await backends.close();
});
teardown.run();
