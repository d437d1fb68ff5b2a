// The owner's two paths: renewals go on while a shop's journal is read, and a database that stops
// answering makes it give its shops up before their leases can end (so nobody else takes them while
// it still decides). The leases here are scripted (a hung database cannot be had on demand below the
// end-to-end tests, test/e2e/store-postgres-faults); the desk, journal and watch list are real.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { Ownership } from '../../../src/cluster/ownership.js';
import type { Round, ShopLeases } from '../../../src/cluster/leases.js';
import { silent } from '../../../src/domain/log.js';
import { WatchList } from '../../../src/cluster/watch-list.js';
import { Backends, deskWorld } from '../../support/desk.js';
import { waitUntil } from '../../support/wait.js';

const SHOP = 'shop_1@own.test';
const backends = new Backends();
const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [{ jid: 'ann@own.test', maxSessions: 5, status: 'always-on' }] }] });

/** Leases whose rounds answer as the test says: held shops with their epochs, or a round that never ends. */
class ScriptedLeases implements ShopLeases {
  readonly holder = 'me#1';
  readonly sidecar = 'me';
  rounds = 0;
  hang = false;
  private hung: ((e: Error) => void)[] = [];
  epochs = new Map([[SHOP, 3]]);
  constructor(readonly ttlMs: number) {}
  markReady(): void {}
  async round(): Promise<Round> {
    this.rounds++;
    if (this.hang) return new Promise<Round>((_, reject) => this.hung.push(reject));
    return { held: new Set(this.epochs.keys()), epochs: new Map(this.epochs), handOver: [], live: ['me'], waiting: [] };
  }
  async release(): Promise<void> {}
  async releaseAll(): Promise<void> {}
  /** The hung rounds end as the driver ends them: a query timeout. */
  answerAgain(): void {
    this.hang = false;
    for (const reject of this.hung.splice(0)) reject(new Error('query timed out'));
  }
}

const owner = suite('the owner of a shop');
owner.after(() => backends.close());

owner('renewals go on while a shop is still being adopted (its journal read)', async () => {
  const w = await deskWorld({ backend: 'memory', backends, config });
  w.desk.shops.drop(SHOP);
  let finish = () => {};
  const adopt = w.desk.shops.adopt.bind(w.desk.shops);
  w.desk.shops.adopt = async (shop) => {
    await new Promise<void>((r) => (finish = r));
    return adopt(shop);
  };
  const leases = new ScriptedLeases(60_000);
  const ownership = new Ownership({ leases, desk: w.desk, directory: w.directory, watch: w.watch, log: silent });
  ownership.start(5);
  try {
    await waitUntil('renewals while the adoption waits', () => leases.rounds >= 4);
    assert.not.ok(w.desk.shops.owns(SHOP), 'not decided before its state is read');
    finish();
    await waitUntil('adopted once its journal is read', () => w.desk.shops.owns(SHOP));
  } finally {
    ownership.stop();
  }
});

owner('a database that stops answering: the shops are given up before their leases end, and taken back when it answers', async () => {
  const w = await deskWorld({ backend: 'memory', backends, config });
  w.desk.shops.drop(SHOP);
  let now = 0;
  const leases = new ScriptedLeases(1000);
  const ownership = new Ownership({ leases, desk: w.desk, directory: w.directory, watch: w.watch, log: silent, now: () => now });
  await ownership.round(); // renewed at 0: the lease runs until at least 1000
  assert.ok(w.desk.shops.owns(SHOP));
  leases.hang = true;
  ownership.start(5);
  try {
    const hungRounds = leases.rounds;
    now = 700;
    await waitUntil('a renewal started (and hangs)', () => leases.rounds > hungRounds);
    await new Promise((r) => setTimeout(r, 30));
    assert.ok(w.desk.shops.owns(SHOP), 'still decided while the lease has most of its period left');
    now = 850;
    await waitUntil('given up while a renewal hangs', () => !w.desk.shops.owns(SHOP));
    assert.ok(now < 1000, 'before the lease could end');
    assert.ok(w.desk.shops.storeUnreachable, 'visitors are told the database is out of reach');
    assert.equal(w.watch.current().owned, [], 'the shims are told it is decided nowhere here');
  } finally {
    ownership.stop();
  }
  // The hung renewal times out and the database answers again: the shop is decided here again.
  leases.answerAgain();
  await ownership.round();
  assert.ok(w.desk.shops.owns(SHOP));
  assert.not.ok(w.desk.shops.storeUnreachable);
});

owner('the shims are told the lease epoch of every shop owned here, and a new epoch when the lease is taken again', async () => {
  const w = await deskWorld({ backend: 'memory', backends, config });
  w.desk.shops.drop(SHOP);
  const leases = new ScriptedLeases(60_000);
  const told: { owned: string[]; epochs: string[] }[] = [];
  let ownership: Ownership | undefined;
  const watch = new WatchList({
    directory: w.directory,
    shops: w.desk.shops,
    sidecar: 'me',
    epochOf: (shop) => ownership?.epochOf(shop),
    push: (m) => told.push({ owned: m.owned, epochs: m.ownedEpochs }),
  });
  ownership = new Ownership({ leases, desk: w.desk, directory: w.directory, watch, log: silent });
  await ownership.round();
  assert.equal(told.at(-1), { owned: [SHOP], epochs: ['3'] });
  // Lost (not renewed), then taken again at a later epoch.
  leases.epochs = new Map();
  await ownership.round();
  assert.equal(told.at(-1), { owned: [], epochs: [] });
  leases.epochs = new Map([[SHOP, 4]]);
  await ownership.round();
  assert.equal(told.at(-1), { owned: [SHOP], epochs: ['4'] });
});

owner.run();
