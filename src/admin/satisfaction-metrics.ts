// Satisfaction and timing gauges on /metrics, per shop (agent="") and per shop and agent, over
// everything archived (that is, the retention period). One aggregate query, reused for 30 s: averages
// over the whole archive need no fresher value, and a busy archive is not scanned on every scrape.
import client from 'prom-client';
import type { ArchiveStats } from '../domain/archive.js';
import type { ArchiveStore } from '../desk/ports.js';

const GAUGES: [string, string, (s: ArchiveStats) => number | null][] = [
  ['consult_archived_sessions', 'Closed sessions in the archive', (s) => s.sessions],
  ['consult_rated_sessions', 'Archived sessions the visitor rated', (s) => s.rated],
  ['consult_csat_ratio', 'CSAT: share of ratings that are 4 or 5', (s) => s.csat],
  ['consult_rating_avg', 'Average rating (1-5)', (s) => s.avgRating],
  ['consult_first_response_seconds_avg', "From the visitor's first message to the first answer", (s) => ms(s.avgFirstResponseMs)],
  ['consult_handle_seconds_avg', 'From the first message to the close', (s) => ms(s.avgHandleMs)],
  ['consult_queue_wait_seconds_avg', 'Time waiting in the queue before an agent took the session', (s) => ms(s.avgQueueWaitMs)],
];
const ms = (v: number | null) => (v === null ? null : v / 1000);

export function registerSatisfaction(registry: client.Registry, archive: ArchiveStore): void {
  let cached: { at: number; stats: Promise<ArchiveStats[]> } | undefined;
  const stats = () => {
    if (!cached || Date.now() - cached.at > 30_000) cached = { at: Date.now(), stats: archive.stats({}) };
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
