// Delivers a shop's webhook events once their decision is durable, off the decision path: one request at a time
// per shop, oldest first (so in order per session), retried with a capped exponential backoff and jitter until the
// endpoint answers 2xx; then a `delivered` change drops it from the outbox. A crash before that change sends it
// again after the restart, with the same id (at least once; the receiver keeps one per X-Consult-Event-Id).
// Decisions never wait for any of this: a dead endpoint only makes the outbox grow, up to limits.outboxMax.
import { type EventHook, type EventsConfig, eventHookOf } from '../domain/config.js';
import type { Log } from '../domain/log.js';
import type { ShopWebhook } from '../domain/shop.js';
import { ThrottledLog } from '../domain/throttle.js';
import type { ShopEvent } from '../routing/state.js';
import type { Act } from './after-commit.js';
import type { HeldShops } from './held-shops.js';
import type { EventDelivery, EventMetrics, PostEvent } from './ports.js';

/** An event's idempotency key: the same on every attempt, after a restart and on the shop's next owner. */
export const eventId = (shop: string, seq: number) => `${shop}/${seq}`;

/** The JSON body of an event (the same bytes on every attempt: the signature covers them). */
export function eventDelivery(shop: string, seq: number, e: ShopEvent): EventDelivery {
  const id = eventId(shop, seq);
  return { id, body: JSON.stringify({ id, shop, seq, ...e }) };
}

/** The wait before retry n (1, 2, …): base·2^(n-1), at most max, scaled by a random 0.5..1 (jitter). */
export function backoffMs(n: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(n - 1, 30));
  return Math.round(ceiling * (0.5 + random() / 2));
}

export interface EventSenderDeps {
  shops: HeldShops;
  events: EventsConfig;
  /** The shop's own webhook as stored now (set through the admin API), read on every use: no restart needed. */
  storedHook?: (shop: string) => ShopWebhook | false | undefined;
  /** None: events wait in the outbox (tools, tests without a webhook). */
  post?: PostEvent;
  act: Act;
  log: Log;
  metrics: EventMetrics;
  random: () => number;
}

export class EventSender {
  private readonly running = new Set<string>();
  private readonly lastError = new Map<string, string>(); // by shop: the last failed attempt, for the throttled warning
  private readonly closing = new AbortController();
  private readonly failures: ThrottledLog;
  private readonly drops: ThrottledLog;

  constructor(private readonly deps: EventSenderDeps) {
    this.failures = new ThrottledLog((shop, count) =>
      deps.log.warn('webhook event not delivered; retrying with backoff (decisions go on)', {
        shop,
        attempts: count,
        last: this.lastError.get(shop),
      }),
    );
    this.drops = new ThrottledLog((shop, count) =>
      deps.log.warn('webhook outbox full (limits.outboxMax): the oldest undelivered events were dropped', { shop, times: count }),
    );
  }

  /** The shop's webhook, if it has one. */
  hookOf(shop: string): EventHook | undefined {
    return eventHookOf(this.deps.events, shop, this.deps.storedHook?.(shop));
  }

  /** A committed decision of the shop dropped this many undelivered events (its outbox was full). */
  dropped(shop: string, n: number): void {
    this.deps.metrics.dropped(shop, n);
    this.drops.note(shop);
  }

  /** Starts delivering the shop's outbox unless that is under way (after a commit, and on every tick). */
  kick(shop: string): void {
    if (!this.deps.post || this.running.has(shop) || this.closing.signal.aborted) return;
    if (!this.deps.shops.deciding(shop)?.outbox.size || !this.hookOf(shop)) return;
    this.running.add(shop);
    void this.deliverAll(shop)
      .catch((e) => this.deps.log.warn('webhook delivery paused; the next tick resumes it', { shop, err: e }))
      .finally(() => this.running.delete(shop));
  }

  /** Stops delivering (shutdown): a request under way is aborted, and sent again by the next start. */
  close(): void {
    this.closing.abort();
    this.failures.flush();
    this.drops.flush();
  }

  private async deliverAll(shop: string): Promise<void> {
    const { act, metrics } = this.deps;
    const post = this.deps.post!;
    let attempts = 0;
    for (;;) {
      // Handed over or lost meanwhile: the shop's next owner sends what is left.
      const st = this.deps.shops.deciding(shop);
      const hook = this.hookOf(shop);
      const head = st?.outbox.entries().next();
      if (!st || !hook || !head || head.done || this.closing.signal.aborted) return;
      const [seq, event] = head.value;
      await act(shop, () => undefined); // every earlier decision of the shop is durable (or taken back)
      if (st.outbox.get(seq) !== event) continue; // its decision was taken back
      try {
        await post(hook, eventDelivery(shop, seq, event), this.closing.signal);
      } catch (e) {
        if (this.closing.signal.aborted) return;
        attempts++;
        metrics.failed(shop);
        this.lastError.set(shop, `${eventId(shop, seq)}: ${e instanceof Error ? e.message : String(e)}`);
        this.failures.note(shop);
        await this.sleep(backoffMs(attempts, this.deps.events.retryBaseMs, this.deps.events.retryMaxMs, this.deps.random));
        continue;
      }
      attempts = 0;
      if (!this.deps.shops.deciding(shop)) return; // handed over meanwhile: the next owner sends it again (the same id)
      await act(shop, (_cx, w) => w.do({ op: 'delivered', seqs: [seq] }));
      metrics.delivered(shop);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref?.();
      const signal = this.closing.signal;
      signal.addEventListener('abort', done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
    });
  }
}
