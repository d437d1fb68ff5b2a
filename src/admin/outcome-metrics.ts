// Counters and histograms of what finished: sessions closed (first response, handle time, queue wait), ratings, chats
// that moved on unanswered, and
// requests to the shops' bots. Recorded as it happens on the live path, so Prometheus can rate() them and
// histogram_quantile() over any window; a restart starts them at zero (a counter reset, which rate() handles).
import client from 'prom-client';
import type { BotRequestReport } from '../bot/webhook.js';
import type { ArchiveRecord, CloseReason } from '../domain/archive.js';
import type { DeskMetrics, EventMetrics } from '../desk/ports.js';

const CLOSE_REASONS: readonly CloseReason[] = ['agent', 'admin', 'idle'];
const SCORES = ['1', '2', '3', '4', '5'];
/** Distinct group labels per shop (a group key may combine several groups); the rest share OTHER_GROUP. */
export const MAX_GROUP_LABELS = 20;
/** Not a group name: those have no slashes. */
export const OTHER_GROUP = '/other';

/** Seconds, from seconds to a working day: customer service answers in seconds to minutes and chats last minutes. */
const FIRST_RESPONSE_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800];
const HANDLE_BUCKETS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
const QUEUE_WAIT_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const BOT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class SessionMetrics implements DeskMetrics {
  private readonly firstResponse: client.Histogram<'shop' | 'group'>;
  private readonly handle: client.Histogram<'shop' | 'group'>;
  private readonly queueWait: client.Histogram<'shop' | 'group'>;
  private readonly closed: client.Counter<'shop' | 'reason'>;
  private readonly ratings: client.Counter<'shop' | 'score'>;
  private readonly missed: client.Counter<'shop'>;
  private readonly abandoned: client.Counter<'shop' | 'group' | 'reason'>;
  private readonly abandonedWait: client.Histogram<'shop' | 'group' | 'reason'>;
  private readonly groups = new Map<string, Set<string>>(); // shop → group labels given out
  /** The shops whose counters are shown at zero before their first close (the shops decided here). */
  shops: () => string[] = () => [];

  constructor(registers: client.Registry[]) {
    const self = this;
    const histogram = (name: string, help: string, buckets: number[]) =>
      new client.Histogram({ name, help, labelNames: ['shop', 'group'], buckets, registers });
    this.firstResponse = histogram(
      'consult_first_response_seconds',
      "Closed sessions: from the visitor's first message to the first answer (agent or bot), queue included; sessions never answered are not observed",
      FIRST_RESPONSE_BUCKETS,
    );
    this.handle = histogram('consult_handle_seconds', 'Closed sessions: from the first message to the close', HANDLE_BUCKETS);
    this.queueWait = histogram(
      'consult_queue_wait_seconds',
      'Closed sessions: time waiting in the queue before an agent (or the bot) took it (0 when taken at once)',
      QUEUE_WAIT_BUCKETS,
    );
    // Counters shown at zero for each shop decided here until they count: the series exist before the first event.
    const countedFromZero = <L extends string>(
      name: string,
      help: string,
      labelNames: L[],
      zeros: (shop: string) => Partial<Record<L, string>>[],
    ) =>
      new client.Counter<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          for (const shop of self.shops()) for (const labels of zeros(shop)) this.inc(labels, 0);
        },
      });
    this.closed = countedFromZero(
      'consult_sessions_closed_total',
      'Sessions closed, by who closed them (agent, admin, idle timer)',
      ['shop', 'reason'],
      (shop) => CLOSE_REASONS.map((reason) => ({ shop, reason })),
    );
    this.ratings = countedFromZero(
      'consult_ratings_total',
      'Ratings visitors gave closed sessions, by score (1-5)',
      ['shop', 'score'],
      (shop) => SCORES.map((score) => ({ shop, score })),
    );
    this.missed = countedFromZero(
      'consult_missed_chats_total',
      'Chats that moved on to another agent because the assigned agent did not answer within answerTimeoutSec',
      ['shop'],
      (shop) => [{ shop }],
    );
    this.abandoned = new client.Counter({
      name: 'consult_queue_abandoned_total',
      help: 'Waits that ended without an agent, the messages kept as a left message: closed (the hours ended), timeout (queueMaxWaitSec), left (the visitor left the queue)',
      labelNames: ['shop', 'group', 'reason'],
      registers,
    });
    this.abandonedWait = new client.Histogram({
      name: 'consult_queue_abandoned_wait_seconds',
      help: 'How long abandoned waits lasted in the queue',
      labelNames: ['shop', 'group', 'reason'],
      buckets: QUEUE_WAIT_BUCKETS,
      registers,
    });
  }

  queueAbandoned(shop: string, group: string, reason: string, waitMs: number): void {
    const labels = { shop, group: this.groupLabel(shop, group), reason };
    this.abandoned.inc(labels);
    this.abandonedWait.observe(labels, waitMs / 1000);
  }

  sessionClosed(r: ArchiveRecord): void {
    const labels = { shop: r.shop, group: this.groupLabel(r.shop, r.group) };
    if (r.firstResponseMs !== null) this.firstResponse.observe(labels, r.firstResponseMs / 1000);
    this.handle.observe(labels, Math.max(0, r.endedAt - r.startedAt) / 1000);
    this.queueWait.observe(labels, r.queueWaitMs / 1000);
    this.closed.inc({ shop: r.shop, reason: r.closeReason });
  }

  rated(shop: string, score: number): void {
    this.ratings.inc({ shop, score: String(score) });
  }

  missedChats(shop: string, n: number): void {
    this.missed.inc({ shop }, n);
  }

  /** The group key as a label, at most MAX_GROUP_LABELS of them per shop. */
  private groupLabel(shop: string, group: string): string {
    let seen = this.groups.get(shop);
    if (!seen) this.groups.set(shop, (seen = new Set()));
    if (seen.has(group)) return group;
    if (seen.size >= MAX_GROUP_LABELS) return OTHER_GROUP;
    seen.add(group);
    return group;
  }
}

/** Webhook events per shop: delivered (a 2xx), failed attempts (retried), dropped undelivered (a full outbox). */
export class WebhookEventMetrics implements EventMetrics {
  private readonly outcomes: client.Counter<'shop' | 'outcome'>;

  constructor(registers: client.Registry[]) {
    this.outcomes = new client.Counter({
      name: 'consult_events_total',
      help: 'Webhook events by outcome: delivered (a 2xx answer), failed (an attempt without one; retried), dropped (undelivered, the outbox was full)',
      labelNames: ['shop', 'outcome'],
      registers,
    });
  }

  delivered(shop: string): void {
    this.outcomes.inc({ shop, outcome: 'delivered' });
  }

  failed(shop: string): void {
    this.outcomes.inc({ shop, outcome: 'failed' });
  }

  dropped(shop: string, n: number): void {
    this.outcomes.inc({ shop, outcome: 'dropped' }, n);
  }
}

export class BotMetrics {
  private readonly requests: client.Counter<'shop' | 'outcome'>;
  private readonly seconds: client.Histogram<'shop'>;

  constructor(registers: client.Registry[]) {
    this.requests = new client.Counter({
      name: 'consult_bot_requests_total',
      help: "HTTP requests to shops' bot webhooks (each retry is one), by outcome: answered, handover, empty, http_error, bad_answer, timeout, unreachable",
      labelNames: ['shop', 'outcome'],
      registers,
    });
    this.seconds = new client.Histogram({
      name: 'consult_bot_request_seconds',
      help: 'One HTTP request to a bot webhook, until its answer was read or it failed',
      labelNames: ['shop'],
      buckets: BOT_BUCKETS,
      registers,
    });
  }

  request(r: BotRequestReport): void {
    this.requests.inc({ shop: r.shop, outcome: r.outcome });
    this.seconds.observe({ shop: r.shop }, r.seconds);
  }
}
