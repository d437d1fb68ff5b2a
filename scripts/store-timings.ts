// Prints rough timings of the stores (not a benchmark, nothing asserted): PGlite open, one withShop round trip.
// npx tsx scripts/store-timings.ts   (starts a private PostgreSQL via test/support/postgres.ts)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../src/sql-store.js';
import type { Store } from '../src/store.js';
import { startPostgres } from '../test/support/postgres.js';

const ms = (t: bigint) => (Number(process.hrtime.bigint() - t) / 1e6).toFixed(2);

async function roundTrips(name: string, store: Store, n = 500) {
  const one = (i: number) => store.withShop('shop', async (tx) => {
    const s = await tx.getSession(`v${i % 20}`);
    await tx.putSession({ visitor: `v${i % 20}`, shop: 'shop', agent: s ? 'b' : 'a', startedAt: i, lastVisitorAt: i, lastAgentAt: 0, remindedAt: 0, orphanedAt: 0 });
  });
  for (let i = 0; i < 20; i++) await one(i); // warm up
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await one(i);
  console.log(`${name}: withShop (getSession + putSession) ${(Number(process.hrtime.bigint() - t) / 1e6 / n).toFixed(3)} ms each, sequential, n=${n}`);
  await store.close();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-timing-'));
let t = process.hrtime.bigint();
const mem = await openStore('pglite:memory');
console.log(`pglite:memory open ${ms(t)} ms (first in this process)`);
t = process.hrtime.bigint();
const disk = await openStore(`pglite:${dir}/db`);
console.log(`pglite:<dir> open (new dir) ${ms(t)} ms`);
await disk.close();
t = process.hrtime.bigint();
const disk2 = await openStore(`pglite:${dir}/db`);
console.log(`pglite:<dir> reopen ${ms(t)} ms`);

await roundTrips('memory:', await openStore('memory:'));
await roundTrips('pglite:memory', mem);
await roundTrips('pglite:<dir>', disk2);
const pg = await startPostgres();
try {
  await roundTrips('postgres (loopback, fsync=off)', await openStore(pg.url));
} finally {
  await pg.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
