// A suite's set-up that can fail the suite.
//
// uvu 0.5 runs `before` hooks in a try/finally whose finally returns: an error thrown there is dropped, the
// suite prints "(0 / N)" in green and the process exits 0, as if nothing were wrong. setUpSuite runs the
// set-up in `before`, keeps its error, and fails every test of the suite with it (a `before.each` error
// is reported per test, with its stack).
import type { Test } from 'uvu';

export function setUpSuite<T>(s: Test<T>, setUp: (ctx: T) => Promise<void>): void {
  let failure: unknown;
  s.before(async (ctx) => {
    try {
      await setUp(ctx);
    } catch (e) {
      failure = e;
    }
  });
  s.before.each(() => {
    if (failure === undefined) return;
    const e = failure as Error;
    throw new Error(`the suite's set-up failed, so this test could not run: ${e?.stack ?? String(failure)}`);
  });
}
