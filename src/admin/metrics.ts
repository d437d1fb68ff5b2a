// Prometheus metrics. A registry per sidecar (not prom-client's global one) so tests can run several. Made before
// the desk (which reports what it finished to `sessions`); `watch()` then adds the gauges that read the desk.
import { readFileSync } from 'node:fs';
import client from 'prom-client';
import type { Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import type { ShimLink } from '../grpc/link.js';
import { BotMetrics, SessionMetrics, WebhookEventMetrics } from './outcome-metrics.js';
import { registerSatisfaction } from './satisfaction-metrics.js';

export interface WatchedParts {
  desk: Desk;
  directory: Directory;
  link: ShimLink;
  storeFreeBytes?: () => number;
}

/** This package's version, as package.json (beside src/ and dist/) says. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export class Metrics {
  readonly registry = new client.Registry();
  readonly stanzas: client.Counter<'action'>;
  readonly decisionSeconds: client.Histogram;
  /** Sessions closed and ratings: the desk's DeskMetrics. */
  readonly sessions: SessionMetrics;
  /** Requests to the bot webhooks. */
  readonly bot: BotMetrics;
  /** Webhook events delivered, failed and dropped: the desk's EventMetrics. */
  readonly events: WebhookEventMetrics;
  private readonly commitSeconds: client.Histogram<'outcome'>;
  private readonly batchEntries: client.Histogram;

  constructor(opts: { defaults?: boolean } = {}) {
    const registers = [this.registry];
    new client.Gauge({
      name: 'consult_build_info',
      help: 'Always 1: the running version and Node.js version as labels',
      labelNames: ['version', 'node_version'],
      registers,
    }).set({ version: packageVersion(), node_version: process.version }, 1);
    this.sessions = new SessionMetrics(registers);
    this.bot = new BotMetrics(registers);
    this.events = new WebhookEventMetrics(registers);
    this.stanzas = new client.Counter({
      name: 'consult_stanzas_total',
      help: 'Stanzas judged, by verdict',
      labelNames: ['action'],
      registers,
    });
    this.decisionSeconds = new client.Histogram({
      name: 'consult_decision_seconds',
      help: "From a stanza's arrival to its verdict (decision and durable commit)",
      registers,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.commitSeconds = new client.Histogram({
      name: 'consult_journal_write_seconds',
      help: 'One group commit of the journal',
      labelNames: ['outcome'],
      registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.batchEntries = new client.Histogram({
      name: 'consult_journal_batch_decisions',
      help: 'Decisions made durable by one group commit',
      registers,
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
    });
    if (opts.defaults) client.collectDefaultMetrics({ register: this.registry });
  }

  /** The gauges that read the desk, the shims' link and the store, on every scrape. */
  watch(deps: WatchedParts): void {
    const registers = [this.registry];
    this.sessions.shops = () => deps.desk.shops.owned();
    new client.Gauge({
      name: 'consult_journal_backlog',
      help: 'Decisions waiting for their changes to be durable (overload above maxPendingDecisions)',
      registers,
      collect() {
        this.set(deps.desk.journal.backlog);
      },
    });
    new client.Gauge({
      name: 'consult_open_sessions',
      help: 'Open sessions per shop decided here',
      labelNames: ['shop'],
      registers,
      collect() {
        this.reset();
        for (const shop of deps.desk.shops.owned()) this.set({ shop }, deps.desk.view.counts(shop).sessions);
      },
    });
    new client.Gauge({
      name: 'consult_queue_length',
      help: 'Visitors waiting per shop decided here',
      labelNames: ['shop'],
      registers,
      collect() {
        this.reset();
        for (const shop of deps.desk.shops.owned()) this.set({ shop }, deps.desk.view.counts(shop).queue);
      },
    });
    new client.Gauge({
      name: 'consult_kept_messages',
      help: 'Messages kept for visitors not yet served, per shop decided here',
      labelNames: ['shop'],
      registers,
      collect() {
        this.reset();
        for (const shop of deps.desk.shops.owned()) this.set({ shop }, deps.desk.view.counts(shop).kept);
      },
    });
    new client.Gauge({
      name: 'consult_left_messages',
      help: 'Left messages (kept outside opening hours or out of the queue) waiting for an agent, per shop decided here',
      labelNames: ['shop'],
      registers,
      collect() {
        this.reset();
        for (const shop of deps.desk.shops.owned()) this.set({ shop }, deps.desk.view.counts(shop).left);
      },
    });
    new client.Gauge({
      name: 'consult_events_outbox',
      help: 'Webhook events not yet delivered, per shop decided here (at most its limits.outboxMax)',
      labelNames: ['shop'],
      registers,
      collect() {
        this.reset();
        for (const shop of deps.desk.shops.owned()) this.set({ shop }, deps.desk.shops.state(shop)?.outbox.size ?? 0);
      },
    });
    new client.Gauge({
      name: 'consult_shops_owned',
      help: 'Shops this sidecar decides now (holds the lease of); the per-shop gauges cover these',
      registers,
      collect() {
        this.set(deps.desk.shops.owned().length);
      },
    });
    new client.Gauge({
      name: 'consult_shim_connections',
      help: 'Open shim streams',
      registers,
      collect() {
        this.set(deps.link.connected);
      },
    });
    new client.Gauge({
      name: 'consult_inject_pending',
      help: 'Injected stanza batches not yet acknowledged by a shim',
      registers,
      collect() {
        this.set(deps.link.pending);
      },
    });
    const storeFreeBytes = deps.storeFreeBytes;
    if (storeFreeBytes)
      new client.Gauge({
        name: 'consult_store_free_bytes',
        help: "Bytes free on the file system of the embedded store's directory (a start needs 64 MiB; a full disk ends the sidecar)",
        registers,
        collect() {
          this.set(storeFreeBytes());
        },
      });
    registerSatisfaction(this.registry, deps.desk.archiver.store);
  }

  observe(action: string, seconds: number): void {
    this.stanzas.inc({ action });
    this.decisionSeconds.observe(seconds);
  }

  batch(b: { entries: number; seconds: number; ok: boolean }): void {
    this.commitSeconds.observe({ outcome: b.ok ? 'ok' : 'failed' }, b.seconds);
    this.batchEntries.observe(b.entries);
  }
}
