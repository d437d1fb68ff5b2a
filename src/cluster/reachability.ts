// Whether the shims can reach this sidecar: a sidecar that just started is no candidate owner
// (src/cluster/leases.ts) until every ejabberd node it has heard of has a stream here, so a live
// standby does not hand shops back to a sidecar nobody can send their stanzas to yet. The nodes
// are those the shims' hellos name as their cluster, less those reported gone.
export class Reachability {
  private readonly streams = new Map<string, number>(); // node → streams open now
  private readonly members = new Set<string>();
  private readonly gone = new Set<string>();

  /** A shim's stream said hello: its node, and the cluster as that node sees it. */
  opened(node: string, cluster: readonly string[] = []): void {
    this.streams.set(node, (this.streams.get(node) ?? 0) + 1);
    for (const n of [node, ...cluster]) this.members.add(n);
    this.gone.delete(node);
  }

  closed(node: string): void {
    const n = (this.streams.get(node) ?? 1) - 1;
    if (n > 0) this.streams.set(node, n);
    else this.streams.delete(node);
  }

  /** A node reported another one leaving (or joining) the cluster. */
  nodeState(node: string, up: boolean): void {
    if (up) {
      this.members.add(node);
      this.gone.delete(node);
    } else this.gone.add(node);
  }

  /** Some node has a stream here, and so has every node of the cluster not reported gone. */
  reached(): boolean {
    if (this.streams.size === 0) return false;
    for (const node of this.members) if (!this.gone.has(node) && !this.streams.has(node)) return false;
    return true;
  }

  /** The nodes still awaited (for the log). */
  awaited(): string[] {
    return [...this.members].filter((n) => !this.gone.has(n) && !this.streams.has(n)).sort();
  }
}

/**
 * Resolves once the shims reach this sidecar, or after `maxMs` (a node that never comes, ejabberd down: the
 * sidecar must not stay out of the spread for ever). `true` if reached.
 */
export async function untilReached(reach: Reachability, maxMs: number, pollMs = 50): Promise<boolean> {
  const until = Date.now() + maxMs;
  while (!reach.reached()) {
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, pollMs).unref());
  }
  return true;
}
