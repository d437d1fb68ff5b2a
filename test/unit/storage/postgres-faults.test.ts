// The PostgreSQL driver when its server fails under it, on a private PostgreSQL: restarted (the announcement
// listener comes back by itself, says so once each way, and asks for a round), and hung by SIGSTOP (every call,
// journal writes included, fails as StoreFailed within the query timeout instead of waiting for ever; after SIGCONT
// the pool serves again, none of its connections left broken).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { pgDriver, pgFailure, StoreFailed, type Driver } from '../../../src/storage/driver.js';
import { SqlJournal } from '../../../src/storage/sql-journal.js';
import { SqlStore } from '../../../src/storage/sql-store.js';
import { recordingLog } from '../../support/log.js';
import { startPostgres, type Postgres } from '../../support/postgres.js';
import { setUpSuite } from '../../support/suite.js';
import { waitUntil, within } from '../../support/wait.js';

interface Ctx {
  pg: Postgres;
  drivers: Driver[];
}
const faults = suite<Ctx>('PostgreSQL restarted or hung under the driver');

setUpSuite(faults, async (ctx) => {
  ctx.pg = await startPostgres();
  ctx.drivers = [];
});
faults.after.each((ctx) => ctx.pg?.thaw());
faults.after(async (ctx) => {
  for (const d of ctx.drivers ?? []) await d.close().catch(() => undefined);
  await ctx.pg?.stop();
});

const open = async (ctx: Ctx, opts: Parameters<typeof pgDriver>[1] = {}) => {
  const db = await pgDriver(ctx.pg.url, opts);
  ctx.drivers.push(db);
  return db;
};
const listening = async (db: Driver, channel: string) =>
  Number(
    (await db.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND query LIKE $1`, [`%${channel}%`]))[0].n,
  );
/** The rejection of p (fails the test if p resolves, or does not settle within ms). */
const rejection = (p: Promise<unknown>, ms: number, what: string) =>
  within(
    p.then(
      () => assert.unreachable(`${what} succeeded against a hung server`),
      (e: unknown) => e,
    ),
    ms,
    what,
  );

faults('the announcement listener comes back after a restart, says so once each way, and asks for a round', async (ctx) => {
  const { log, lines } = recordingLog({ info: true });
  const db = await open(ctx, { log });
  const other = await open(ctx);
  let heard = 0;
  await db.listen!('restart_test', () => heard++);
  assert.is(await listening(other, 'restart_test'), 1);
  await other.query(`SELECT pg_notify('restart_test', '')`);
  await waitUntil('the first NOTIFY', () => heard === 1);

  await ctx.pg.restart(); // every connection cut; the pooled ones too
  await waitUntil('the listener back', () => lines.some((l) => l.msg.includes('heard again')), {
    detail: () => JSON.stringify(lines),
  });
  assert.is(heard, 2, 'told once after the reconnect, as a NOTIFY may have been missed meanwhile');
  assert.is(lines.filter((l) => l.msg.includes('lost the PostgreSQL connection that hears announcements')).length, 1, 'the loss, once');
  assert.is(lines.filter((l) => l.msg.includes('heard again')).length, 1, 'the recovery, once');
  assert.ok(lines.findIndex((l) => l.msg.includes('lost')) < lines.findIndex((l) => l.msg.includes('heard again')), 'lost, then back');
  assert.is(await listening(other, 'restart_test'), 1, 'LISTEN issued again on the new connection');

  await other.query(`SELECT pg_notify('restart_test', '')`);
  await waitUntil('a NOTIFY sent after the restart', () => heard === 3);
});

faults('against a hung server every call fails as StoreFailed, and after SIGCONT the pool serves again', async (ctx) => {
  const db = await open(ctx, { connectTimeoutMs: 300, queryTimeoutMs: 300 });
  await SqlStore.open(db);
  const journal = new SqlJournal(db);
  // Pooled connections to the server, idle and ready: the hang must be noticed on them, not only on new ones.
  await Promise.all([1, 2, 3].map((n) => db.query('SELECT $1::int AS n', [n])));

  ctx.pg.freeze();
  const calls: [string, Promise<unknown>][] = [
    ['a query', db.query('SELECT 1')],
    ['a transaction', db.transaction(async (q) => q.query('SELECT 2'))],
    ['a journal write', journal.append([{ shop: 'shop@x', changes: [] }], [])],
    ['a journal write with a snapshot', journal.append([{ shop: 'shop@x', changes: [] }], [{ shop: 'shop@x', parts: ['{}'] }])],
  ];
  const failures = calls.map(([what, call]) => rejection(call, 10_000, what)); // all at once, as the desk makes them
  for (const [i, e] of (await Promise.all(failures)).entries()) assert.instance(e, StoreFailed, `${calls[i][0]}: ${String(e)}`);
  // The pool's connections that timed out are gone: a new call needs a new connection, which cannot be made either.
  const e = await rejection(db.query('SELECT 3'), 10_000, 'a query on a new connection');
  assert.instance(e, StoreFailed);

  ctx.pg.thaw();
  // Every connection the pool hands out answers its own query: none is left waiting for an old one's answer.
  const answers = await within(
    Promise.all(Array.from({ length: 12 }, (_, n) => db.query('SELECT $1::int AS n', [n]))),
    10_000,
    'queries after SIGCONT',
  );
  assert.equal(
    answers.map((r) => r[0].n),
    Array.from({ length: 12 }, (_, n) => n),
  );
  await journal.append([{ shop: 'shop@x', changes: [] }], [{ shop: 'shop@x', parts: ['{}'] }]);
  assert.equal((await journal.load('shop@x')).snapshot, ['{}'], 'a journal write goes through again');
});

faults('a statement past the query timeout is cancelled by the server and reported as StoreFailed', async (ctx) => {
  const db = await open(ctx, { queryTimeoutMs: 300 });
  const e = await rejection(db.query('SELECT pg_sleep(5)'), 10_000, 'a slow statement');
  assert.instance(e, StoreFailed);
  assert.equal(await db.query('SELECT 1 AS one'), [{ one: 1 }]);
});

faults('an SQL error is not the store out of reach, and its connection stays in use', async (ctx) => {
  const db = await open(ctx);
  await db.query('CREATE TABLE IF NOT EXISTS public.once (id int PRIMARY KEY)');
  await db.query('INSERT INTO public.once VALUES (1)');
  const e = await db.query('INSERT INTO public.once VALUES (1)').then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(e, 'the duplicate is refused');
  assert.not.instance(e, StoreFailed);
  assert.is(pgFailure(e, 2000), undefined);
  const inTx = await db
    .transaction(async (q) => q.query('SELECT * FROM public.no_such_table'))
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  assert.not.instance(inTx, StoreFailed);
  assert.equal(await db.transaction(async (q) => q.query('SELECT count(*)::int AS n FROM public.once')), [{ n: 1 }]);
});

faults.run();
