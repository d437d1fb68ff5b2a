// The embedded store's directory (src/storage/dir-lock.ts, pglite-disk.ts, the PGlite driver): each journal write
// is synced to the disk before it resolves (told by the driver's sync hook); one opener per directory; which errors
// end the store; the PostgreSQL driver's search path.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { lockDir, StoreLocked } from '../../../src/storage/dir-lock.js';
import { pgliteDriver, withSearchPath } from '../../../src/storage/driver.js';
import { storesOn } from '../../../src/storage/open.js';
import { failureText, isFatal, startParams } from '../../../src/storage/pglite-disk.js';

const disk = suite<{ dir: string }>('the embedded store on disk');
disk.before((ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-disk-'));
});
disk.after((ctx) => {
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

disk('every journal write syncs the WAL (fdatasync of a pg_wal segment) before it resolves', async (ctx) => {
  const events: string[] = [];
  const db = await pgliteDriver(path.join(ctx.dir, 'db'), { onSync: (p) => events.push(`sync ${p}`) });
  try {
    assert.ok(fs.existsSync(path.join(ctx.dir, 'db', 'PG_VERSION')), 'a new database was made');
    assert.not.ok(fs.existsSync(path.join(ctx.dir, 'db', '.initdb')), 'and moved in');
    const { journal } = await storesOn(db, { holder: 'd#1', sidecar: 'd' }, { shared: false });
    for (let i = 0; i < 10; i++) {
      events.length = 0;
      const write = journal.append([{ shop: 's1', changes: [{ op: 'enqueue', v: `v${i}`, at: i }] }], []);
      events.push('asked');
      await write;
      events.push('resolved');
      const wal = events.slice(0, events.indexOf('resolved')).filter((e) => /^sync .*\/pg_wal\/[0-9A-F]{24}$/.test(e));
      assert.ok(wal.length >= 1, `write ${i}: its WAL synced before it resolved (${events.join(', ')})`);
    }
    // 15 MB more of WAL: a new segment, synced with its directory when made.
    const segments = () => fs.readdirSync(path.join(ctx.dir, 'db', 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n)).length;
    const before = segments();
    events.length = 0;
    for (let i = 0; i < 10; i++)
      await db.query(`INSERT INTO journal (shop, body) SELECT 's2', $1 FROM generate_series(1, 1000)`, [
        randomBytes(1100).toString('base64'),
      ]);
    assert.ok(segments() > before, 'a new WAL segment was made');
    assert.ok(
      events.includes('sync /pglite/data/pg_wal'),
      `and pg_wal/ synced (${[...new Set(events)].filter((e) => !/0{7}1$/.test(e)).join(', ')})`,
    );
    events.length = 0;
    await db.query('CHECKPOINT');
    assert.ok(
      events.some((e) => /\/base\/\d+\/\d+$/.test(e)),
      `a checkpoint syncs the data files it wrote (${events.slice(0, 5).join(', ')})`,
    );
    assert.equal((await db.query('SHOW fsync'))[0], { fsync: 'on' });
    assert.equal((await db.query('SHOW search_path'))[0], { search_path: 'consult' });
    assert.ok(db.freeBytes!() > 0);
  } finally {
    await db.close();
  }
});

disk("one opener per directory: a second is refused with the holder's PID; the lock goes with close()", async (ctx) => {
  const dir = path.join(ctx.dir, 'locked');
  const db = await pgliteDriver(dir);
  try {
    const err = await pgliteDriver(dir).then(
      async (other) => {
        await other.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.instance(err, StoreLocked);
    assert.is((err as StoreLocked).pid, process.pid);
    assert.match(err!.message, `the store directory ${dir} is already open by another consult sidecar (pid ${process.pid})`);
    assert.equal((await db.query('SELECT 1 AS one'))[0], { one: 1 }, 'the holder goes on');
  } finally {
    await db.close();
  }
  const again = await lockDir(dir); // released by close()
  again.release();
});

disk('a long path is hashed into the socket name', async (ctx) => {
  const dir = path.join(ctx.dir, 'x'.repeat(120));
  fs.mkdirSync(dir);
  const a = await lockDir(dir);
  try {
    await lockDir(dir).then(
      () => assert.unreachable('taken twice'),
      (e) => assert.instance(e, StoreLocked),
    );
  } finally {
    a.release();
  }
});

disk('a directory that is not empty and holds no database is not touched', async (ctx) => {
  const dir = path.join(ctx.dir, 'stray');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
  await pgliteDriver(dir).then(
    () => assert.unreachable('opened'),
    (e: Error) => assert.match(e.message, 'holds no database (no PG_VERSION) but is not empty (notes.txt)'),
  );
  assert.equal(fs.readdirSync(dir), ['notes.txt']);
});

const pure = suite('store failures and settings');

pure('which errors end the embedded store, and how they are told', () => {
  assert.ok(
    isFatal({ severity: 'PANIC', code: '53100', message: 'could not write to file "pg_wal/xlogtemp.42": No space left on device' }),
  );
  assert.ok(isFatal({ severity: 'ERROR', code: '53100', message: 'could not extend file "base/5/1": No space left on device' }));
  assert.ok(isFatal({ severity: 'FATAL', code: '57P01' }));
  assert.ok(isFatal(Object.assign(new Error('Aborted(). Build with -sASSERTIONS for more info.'), { name: 'RuntimeError' })));
  assert.ok(isFatal({ name: 'ErrnoError', errno: 51 }));
  assert.not.ok(isFatal({ severity: 'ERROR', code: '23505', message: 'duplicate key value violates unique constraint' }));
  assert.not.ok(isFatal(new Error('PGlite is closed')));
  assert.match(failureText({ severity: 'PANIC', code: '53100', message: 'no room' }, '/nowhere'), /^disk full under \/nowhere: no room$/);
  assert.match(failureText({ name: 'ErrnoError', errno: 51 }, '/nowhere'), /^disk full under \/nowhere/);
  assert.match(failureText({ severity: 'PANIC', message: 'boom' }, '/nowhere'), 'the embedded store under /nowhere failed (PANIC): boom');
});

pure('start parameters: fsync on for a directory, our schema first, a smaller buffer pool', () => {
  const defaults = ['--single', '-F', '-O', '-j', '-c', 'search_path=public', '-c', 'exit_on_error=false'];
  const onDisk = startParams(defaults, true);
  assert.not.ok(onDisk.includes('-F'));
  assert.not.ok(onDisk.includes('search_path=public'));
  for (const s of ['search_path=consult', 'wal_sync_method=fsync', 'shared_buffers=16MB', 'exit_on_error=false'])
    assert.ok(onDisk.includes(s), s);
  const inMemory = startParams(defaults, false);
  assert.ok(inMemory.includes('-F'), 'in memory there is nothing to sync');
  assert.ok(inMemory.includes('search_path=consult'));
});

pure('PostgreSQL: our schema first in the search path, options of the URL kept', () => {
  assert.equal(withSearchPath('postgres://u@h:5432/db'), { connectionString: 'postgres://u@h:5432/db', options: '-c search_path=consult' });
  const given = withSearchPath('postgres://u:p%40ss@h/db?options=-c%20statement_timeout%3D5000');
  assert.is(given.options, undefined);
  assert.is(new URL(given.connectionString).searchParams.get('options'), '-c statement_timeout=5000 -c search_path=consult');
  assert.match(given.connectionString, 'u:p%40ss@h');
});

disk.run();
pure.run();
