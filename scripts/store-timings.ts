// Prints rough timings of the journal stores (not a benchmark, nothing asserted): opening each store,
// and one group commit (JournalStore.append) of k changes, written one after another, for several k.
// A group commit's fixed cost is what decides how much batching a store needs.
//   npx tsx scripts/store-timings.ts [--no-postgres]   (postgres: a private PostgreSQL via test/support/postgres.ts)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Change } from '../src/routing/state.js';
import { openStores, type Stores } from '../src/storage/open.js';
import { startPostgres } from '../test/support/postgres.js';

const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;
const XML = `<message xmlns='jabber:client' type='consult' to='test01@localhost' from='shop_2@localhost' realfrom='v1@localhost' realto='test01@localhost' channelid='{"cn":"consult","d":"recv","usrType":"usr"}' qchatid='4' msec_times='1764088000000'><body msgType='1' maType='6' id='B1'>hello</body></message>`;
const said = (i: number): Change => ({ op: 'said', v: `v${i % 200}@localhost`, by: 'visitor', at: 1_764_088_000_000 + i, xml: XML });

async function timings(name: string, url: string) {
  let t = process.hrtime.bigint();
  const stores: Stores = await openStores(url, { holder: `timings-${process.pid}`, sidecar: 'timings' });
  await stores.leases.round(['shop_2@localhost']);
  const opened = ms(t);
  const cells: string[] = [];
  for (const k of [1, 4, 16, 64, 256]) {
    const records = [{ shop: 'shop_2@localhost', changes: Array.from({ length: k }, (_, i) => said(i)) }];
    for (let i = 0; i < 5; i++) await stores.journal.append(records, []); // warm up
    const n = Math.max(20, Math.round(2000 / k));
    t = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    for (let i = 0; i < n; i++) await stores.journal.append(records, []);
    const each = ms(t) / n;
    const c = process.cpuUsage(cpu);
    cells.push(
      `k=${k}: ${each.toFixed(2)} ms (${((c.user + c.system) / 1000 / n).toFixed(2)} ms CPU here) = ${((1000 * each) / k).toFixed(0)} µs/change`,
    );
  }
  t = process.hrtime.bigint();
  const loaded = await stores.journal.load('shop_2@localhost');
  const loadMs = ms(t);
  console.log(
    `${name}: open ${opened.toFixed(0)} ms; one append of k changes, sequential: ${cells.join('; ')}; ` +
      `load of ${loaded.batches.reduce((s, b) => s + b.length, 0)} changes ${loadMs.toFixed(0)} ms`,
  );
  await stores.leases.releaseAll();
  await stores.store.close();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'journal-timings-'));
try {
  await timings('memory:', 'memory:');
  await timings('pglite:memory', 'pglite:memory');
  await timings('pglite:<dir>', `pglite:${dir}/db`);
  if (!process.argv.includes('--no-postgres')) {
    const pg = await startPostgres();
    try {
      await timings('postgres (loopback, fsync=off)', pg.url);
    } finally {
      await pg.stop();
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
