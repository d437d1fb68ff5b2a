// The fenced sidecar: on PostgreSQL every journal write is fenced on its shop's lease. A desk whose
// lease was taken by another holder (it was paused past expiry, or cut off) has its next write
// refused: the stanza is answered service-unavailable, nothing of it is written, and the shop is
// dropped here at once (no longer owned, the shims told), so later stanzas are refused as
// decided by another sidecar.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Action, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import { parseElement } from '../../../src/xmpp/xml.js';
import { Backends, deskWorld } from '../../support/desk.js';

const D = 'fence.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const backends = new Backends();

const relayedTo = (v: Verdict) =>
  v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined;
const refusal = (v: Verdict) => (v.action === Action.ACTION_REJECT ? `${v.error!.condition}/${v.error!.type}` : undefined);

const fenced = suite('a sidecar whose lease was taken [postgres]');
fenced.after(() => backends.close());

fenced('its write is refused (LeaseLost): service-unavailable, nothing written, the shop dropped and the shims told', async () => {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [{ jid: a('ann'), maxSessions: 5, status: 'always-on' }] }] });
  const w = await deskWorld({ backend: 'postgres', backends, config });
  const says = (v: string, id: string) =>
    w.filter(`<message type='consult' from='${a(v)}/web' to='${SHOP}'><body id='${id}'>${id}</body></message>`);
  const told: string[][] = [];
  w.link.pushWatchList = (watch) => {
    told.push(watch.owned);
  };
  assert.ok(w.desk.shops.owns(SHOP));
  assert.is(relayedTo(await says('v1', 'before')), a('ann'), 'decided here while the lease is ours');

  // Another sidecar takes the lease (ours ran out while this one was paused, say): a valid lease of another holder.
  const db = await backends.driver('postgres');
  const moved = await db.query(
    `UPDATE shop_lease SET holder = 'other#1', sidecar = 'other', expires_at = (extract(epoch from clock_timestamp()) * 1000) + 60000
     WHERE shop = $1 RETURNING shop`,
    [SHOP],
  );
  assert.is(moved.length, 1);
  assert.ok(w.desk.shops.owns(SHOP), 'this desk does not know yet: its next round would tell it');

  const refused = await says('v2', 'during');
  assert.is(refusal(refused), 'service-unavailable/wait', 'the write was fenced off');
  assert.match(refused.error!.text, 'could not record this message');
  assert.equal(refused.extra, [], 'no ack, no welcome: nothing of it happened');
  assert.not.ok(w.desk.shops.owns(SHOP), 'dropped at once, not at the next round');
  assert.equal(told, [[]], 'the shims are told it is no longer decided here');
  assert.equal(w.desk.view.sessions(SHOP), [], 'its state is no longer held here');

  const journal = JSON.stringify((await w.journal.load(SHOP)).batches);
  assert.match(journal, a('v1'), 'what was durable before stays');
  assert.not.match(journal, a('v2'), 'nothing of the refused decision was written');

  const later = await says('v1', 'after');
  assert.is(refusal(later), 'service-unavailable/wait');
  assert.match(later.error!.text, `${SHOP} is decided by another consult sidecar`);
  await w.ownership.round();
  assert.not.ok(w.desk.shops.owns(SHOP), "a round leaves it to its holder: the other's lease is valid");
});

fenced.run();
