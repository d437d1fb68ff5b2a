// Shared helpers for the bench scripts: percentiles and a plain-text table.
import fs from 'node:fs';
export interface Row {
  mode: string;
  count: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
  note?: string;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function stats(count: number, seconds: number, latenciesMs: number[]): Omit<Row, 'mode'> {
  const s = [...latenciesMs].sort((a, b) => a - b);
  return { count, seconds, perSecond: count / seconds, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

export function printTable(rows: Row[]): void {
  const head = ['mode', 'count', 'seconds', 'msg/s', 'p50 ms', 'p99 ms', 'max ms', 'note'];
  const body = rows.map((r) => [
    r.mode,
    String(r.count),
    r.seconds.toFixed(2),
    r.perSecond.toFixed(0),
    r.p50.toFixed(2),
    r.p99.toFixed(2),
    r.max.toFixed(2),
    r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const b of body) console.log(line(b));
}

/** CPU seconds (user+system, all threads) a process has used so far (Linux /proc, 100 ticks/s); 0 if gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** PIDs of processes whose command line has an argument equal to `arg` (read-only look-up in /proc). */
export function pidsWithArg(arg: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes(arg);
      } catch {
        return false;
      }
    })
    .map(Number);
}
