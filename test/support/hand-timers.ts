// Timers (src/desk/presence.ts) that fire only when a test moves time by hand.
import type { Timers } from '../../src/desk/presence.js';

export class HandTimers implements Timers {
  private now = 0;
  private due: { at: number; fn: () => void }[] = [];

  after(ms: number, fn: () => void): () => void {
    const t = { at: this.now + ms, fn };
    this.due.push(t);
    return () => {
      this.due = this.due.filter((x) => x !== t);
    };
  }

  /** Timers set and not yet fired or cancelled. */
  get pending(): number {
    return this.due.length;
  }

  /** Fires, in order, every timer due within `ms`; then lets what they started (store writes in memory) finish. */
  async advance(ms: number): Promise<void> {
    const until = this.now + ms;
    for (;;) {
      const next = this.due.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.due = this.due.filter((t) => t !== next);
      this.now = next.at;
      next.fn();
    }
    this.now = until;
    await new Promise((r) => setImmediate(r));
  }
}
