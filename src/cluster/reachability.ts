// A sidecar that just started is no candidate owner (src/cluster/leases.ts) until the shims can send it stanzas:
// every ejabberd node it has heard of has a stream to it (ShimLink.reachedByAll), or it has waited long enough.

/**
 * Resolves once `reached()` holds, or after `maxMs` (a node that never comes, ejabberd down: the sidecar must not
 * stay out of the spread for ever). `true` if reached.
 */
export async function untilReached(reached: () => boolean, maxMs: number, pollMs = 50): Promise<boolean> {
  const until = Date.now() + maxMs;
  while (!reached()) {
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, pollMs).unref());
  }
  return true;
}
