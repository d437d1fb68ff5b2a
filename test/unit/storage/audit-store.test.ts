// The audit log's stores: one suite on MemoryAudit (the reference), SqlAudit on PGlite (in memory) and SqlAudit on a
// private PostgreSQL server; every case must give the same answers on all three. Begin, finish, the filters, paging
// newest first, retention.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AuditStart, AuditStore } from '../../../src/domain/audit.js';
import { MemoryAudit } from '../../../src/storage/memory-audit.js';
import { SqlAudit } from '../../../src/storage/sql-audit.js';
import { type Driver, pgDriver, pgliteDriver } from '../../../src/storage/driver.js';
import { SqlStore } from '../../../src/storage/sql-store.js';
import { startPostgres, type Postgres } from '../../support/postgres.js';
import { setUpSuite } from '../../support/suite.js';

let postgres: Postgres;
let pgliteDb: Driver;
let pgDb: Driver;

// A fresh, empty log per case: SQL ones reuse the database and truncate (ids restart too, as a new memory log's).
const backends: Record<string, () => Promise<AuditStore>> = {
  memory: async () => new MemoryAudit(),
  pglite: async () => {
    await pgliteDb.query('TRUNCATE audit RESTART IDENTITY');
    return new SqlAudit(pgliteDb);
  },
  postgres: async () => {
    await pgDb.query('TRUNCATE audit RESTART IDENTITY');
    return new SqlAudit(pgDb);
  },
};

setUpSuite(test, async () => {
  postgres = await startPostgres();
  pgDb = await pgDriver(postgres.url);
  pgliteDb = await pgliteDriver();
  await SqlStore.open(pgDb); // migrates
  await SqlStore.open(pgliteDb);
});

test.after(async () => {
  await pgliteDb?.close();
  await pgDb?.close();
  await postgres?.stop();
});

const start = (at: number, token: string, shop: string, extra: Partial<AuditStart> = {}): AuditStart => ({
  at,
  token,
  role: 'admin',
  method: 'PATCH',
  path: `/shops/${shop}`,
  route: 'PATCH /shops/{shop}',
  target: { shop },
  ...extra,
});

for (const [name, open] of Object.entries(backends)) {
  test(`${name}: an entry is begun without a status, then finished with its outcome`, async () => {
    const log = await open();
    const id = await log.begin(start(1000, 'boss', 's@x'));
    assert.equal(await log.search({ limit: 10 }), [
      {
        id,
        at: 1000,
        token: 'boss',
        role: 'admin',
        method: 'PATCH',
        path: '/shops/s@x',
        route: 'PATCH /shops/{shop}',
        status: null,
        target: { shop: 's@x' },
      },
    ]);
    await log.finish(id, {
      status: 200,
      target: { shop: 's@x', agent: 'a@x' },
      request: { name: 'New' },
      before: { name: 'Old', n: [1, 2] },
      after: null,
    });
    const [e] = await log.search({ limit: 10 });
    assert.equal(e, {
      id,
      at: 1000,
      token: 'boss',
      role: 'admin',
      method: 'PATCH',
      path: '/shops/s@x',
      route: 'PATCH /shops/{shop}',
      status: 200,
      target: { shop: 's@x', agent: 'a@x' },
      request: { name: 'New' },
      before: { name: 'Old', n: [1, 2] },
      after: null,
    });
    // The finished target is searched by.
    assert.equal(
      (await log.search({ target: 'a@x', limit: 10 })).map((x) => x.id),
      [id],
    );
  });

  test(`${name}: newest first; filters by token, target and time; pages below an id; purge by age`, async () => {
    const log = await open();
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) {
      const id = await log.begin(start(1000 + i * 100, i % 2 ? 'desk' : 'boss', i < 3 ? 'one@x' : 'two@x'));
      await log.finish(id, { status: i === 5 ? 403 : 200, target: { shop: i < 3 ? 'one@x' : 'two@x', visitor: `v${i}@x` } });
      ids.push(id);
    }
    const got = async (q: Parameters<AuditStore['search']>[0]) => (await log.search(q)).map((e) => ids.indexOf(e.id));
    assert.equal(await got({ limit: 100 }), [5, 4, 3, 2, 1, 0]);
    assert.equal(await got({ limit: 2 }), [5, 4]);
    assert.equal(await got({ limit: 2, before: ids[4] }), [3, 2]);
    assert.equal(await got({ limit: 100, token: 'desk' }), [5, 3, 1]);
    assert.equal(await got({ limit: 100, target: 'one@x' }), [2, 1, 0]);
    assert.equal(await got({ limit: 100, target: 'v4@x' }), [4]);
    assert.equal(await got({ limit: 100, from: 1200, to: 1400 }), [4, 3, 2]);
    assert.equal(await got({ limit: 100, token: 'nobody' }), []);
    assert.is(await log.purge(1300), 3);
    assert.equal(await got({ limit: 100 }), [5, 4, 3]);
    assert.is(await log.purge(1300), 0);
  });
}

test.run();
