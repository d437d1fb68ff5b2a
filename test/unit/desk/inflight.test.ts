// Shutdown waits for in-flight decisions, but not forever.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InFlight } from '../../../src/desk/inflight.js';

const later = <T>(ms: number, v: T) => new Promise<T>((r) => setTimeout(() => r(v), ms));

test('drain waits for tracked work, including work that arrives while draining', async () => {
  const f = new InFlight();
  const first = f.track(later(100, 'a'));
  setTimeout(() => void f.track(later(100, 'b')), 50);
  const started = Date.now();
  assert.is(f.size, 1);
  assert.is(await f.drain(5000), true);
  assert.ok(Date.now() - started >= 140, 'waited for the second one too');
  assert.is(f.size, 0);
  assert.is(await first, 'a', 'track passes the result through');
});

test('drain gives up after its deadline; failures count as finished', async () => {
  const f = new InFlight();
  f.track(new Promise(() => {}));
  const started = Date.now();
  assert.is(await f.drain(100), false);
  assert.ok(Date.now() - started < 1000);
  const g = new InFlight();
  g.track(Promise.reject(new Error('x'))).catch(() => {});
  assert.is(await g.drain(100), true);
});

test.run();
