// Prometheus metrics. A registry per sidecar (not prom-client's global one) so tests can run several.
import client from 'prom-client';
import type { Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import type { ShimLink } from '../grpc/link.js';
import { registerSatisfaction } from './satisfaction-metrics.js';

export class Metrics {
  readonly registry = new client.Registry();
  readonly stanzas: client.Counter<'action'>;
  readonly decisionSeconds: client.Histogram;
  private readonly commitSeconds: client.Histogram<'outcome'>;
  private readonly batchEntries: client.Histogram;

  constructor(
    deps: { desk: Desk; directory: Directory; link: ShimLink; storeFreeBytes?: () => number },
    opts: { defaults?: boolean } = {},
  ) {
    const registers = [this.registry];
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
    if (opts.defaults) client.collectDefaultMetrics({ register: this.registry });
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
