// Satisfaction gauges on /metrics, per shop (agent="") and per shop and agent, over everything archived (that is,
// the retention period): what the archive holds, not what happened lately (for that, rate() the counters and
// histograms in outcome-metrics.ts). One aggregate query, reused for 30 s: a busy archive is not scanned on every
// scrape.
import client from 'prom-client';
import type { ArchiveStats } from '../domain/archive.js';
import type { ArchiveStore } from '../desk/ports.js';

const GAUGES: [string, string, (s: ArchiveStats) => number | null][] = [
  ['consult_rated_sessions', 'Archived sessions the visitor rated (the whole archive)', (s) => s.rated],
  ['consult_csat_ratio', 'CSAT over the whole archive: share of ratings that are 4 or 5', (s) => s.csat],
];

export function registerSatisfaction(registry: client.Registry, archive: ArchiveStore): void {
  let cached: { at: number; stats: Promise<ArchiveStats[]> } | undefined;
  const stats = () => {
    // An archive that does not answer leaves these gauges out of the scrape instead of failing all of it.
    if (!cached || Date.now() - cached.at > 30_000) cached = { at: Date.now(), stats: archive.stats({}).catch(() => []) };
    return cached.stats;
  };
  for (const [name, help, value] of GAUGES) {
    new client.Gauge({
      name,
      help,
      labelNames: ['shop', 'agent'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await stats()) {
          const v = value(s);
          if (v !== null) this.set({ shop: s.shop, agent: s.agent ?? '' }, v);
        }
      },
    });
  }
}
