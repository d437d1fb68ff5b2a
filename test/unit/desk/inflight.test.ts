// Shutdown waits for in-flight decisions, but not forever.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InFlight } from '../../../src/desk/inflight.js';

/** A promise the test settles by hand. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Lets every settled promise's callbacks run. */
const turn = () => new Promise((r) => setImmediate(r));

test('drain waits for tracked work, including work that arrives while draining', async () => {
  const f = new InFlight();
  const a = deferred<string>();
  const b = deferred<string>();
  const first = f.track(a.promise);
  assert.is(f.size, 1);
  let drained: boolean | undefined;
  const draining = f.drain(60_000).then((ok) => {
    drained = ok;
  });
  void f.track(b.promise); // arrives while draining
  assert.is(f.size, 2);
  a.resolve('a');
  await turn();
  assert.is(f.size, 1);
  assert.is(drained, undefined, 'still waiting for the second one');
  b.resolve('b');
  await draining;
  assert.is(drained, true, 'waited for the second one too');
  assert.is(f.size, 0);
  assert.is(await first, 'a', 'track passes the result through');
});

test('drain gives up after its deadline; failures count as finished', async () => {
  const f = new InFlight();
  f.track(new Promise(() => {}));
  assert.is(await f.drain(100), false);
  assert.is(f.size, 1, 'the work is still pending: drain only stopped waiting');
  const g = new InFlight();
  g.track(Promise.reject(new Error('x'))).catch(() => {});
  assert.is(await g.drain(60_000), true);
  assert.is(g.size, 0);
});

test.run();
