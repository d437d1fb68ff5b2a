// Prometheus metrics. A registry per sidecar (not prom-client's global one) so tests can run several.
import client from 'prom-client';
import type { Directory } from './directory.js';
import type { ShimLink } from './server.js';
import type { Store } from './store.js';

export class Metrics {
  readonly registry = new client.Registry();
  readonly stanzas: client.Counter<'action'>;
  readonly decisionSeconds: client.Histogram;

  constructor(deps: { store: Store; directory: Directory; link: ShimLink }, opts: { defaults?: boolean } = {}) {
    const registers = [this.registry];
    this.stanzas = new client.Counter({ name: 'consult_stanzas_total', help: 'Stanzas judged, by verdict', labelNames: ['action'], registers });
    this.decisionSeconds = new client.Histogram({
      name: 'consult_decision_seconds', help: 'Time to decide one stanza', registers,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    });
    // Sessions and queues live in the store (shared between sidecars): read them on scrape.
    new client.Gauge({
      name: 'consult_open_sessions', help: 'Open sessions per shop', labelNames: ['shop'], registers,
      async collect() {
        this.reset();
        const sessions = await deps.store.allSessions();
        for (const shop of deps.directory.allShops()) this.set({ shop: shop.jid }, sessions.filter((s) => s.shop === shop.jid).length);
      },
    });
    new client.Gauge({
      name: 'consult_queue_length', help: 'Visitors waiting per shop', labelNames: ['shop'], registers,
      async collect() {
        this.reset();
        for (const shop of deps.directory.allShops()) this.set({ shop: shop.jid }, (await deps.store.withShop(shop.jid, (tx) => tx.queue())).length);
      },
    });
    new client.Gauge({
      name: 'consult_shim_connections', help: 'Open shim streams', registers,
      collect() { this.set(deps.link.connected); },
    });
    if (opts.defaults) client.collectDefaultMetrics({ register: this.registry });
  }

  observe(action: string, seconds: number): void {
    this.stanzas.inc({ action });
    this.decisionSeconds.observe(seconds);
  }
}
