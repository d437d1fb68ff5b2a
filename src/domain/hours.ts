// Opening hours: a weekly schedule of local wall-clock spans in an IANA time zone, with dated exceptions (a holiday
// closed, a special day with hours of its own). Pure date math over the built-in Intl.DateTimeFormat: no library,
// and the zone rules are the runtime's (ICU's tz data).
//   isOpenAt(hours, at)      is the schedule open at this instant?
//   nextOpening(hours, at)   the first instant after `at` at which it opens (undefined: not within a year)
//   localTime(zone, at)      "YYYY-MM-DD HH:mm" as the zone's clocks show it
// Spans are [start, end) in "HH:MM" (end may be "24:00"). A start that a spring-forward gap skips opens when the
// clocks jump past it; in the repeated hour of a fall-back a span follows the wall clock (it may last an hour longer).

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const; // Date#getUTCDay order
export type Weekday = (typeof WEEKDAYS)[number];
export type Span = [string, string];

export interface DatedHours {
  date: string; // YYYY-MM-DD in the schedule's zone
  hours: Span[]; // [] = closed all day
  note?: string;
}

export interface OpeningHours {
  timeZone: string;
  weekly: Partial<Record<Weekday, Span[]>>; // a day not listed is closed
  exceptions: DatedHours[];
}

const MINUTE = 60_000;
const DAY = 86_400_000;
/** How far ahead nextOpening looks for an opening. */
export const OPENING_HORIZON_DAYS = 370;

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** Whether the runtime knows this IANA zone name. */
export function isTimeZone(zone: string): boolean {
  try {
    formatter(zone);
    return true;
  } catch {
    return false;
  }
}

interface Wall {
  y: number;
  m: number; // 1..12
  d: number;
  minute: number; // since local midnight
  second: number;
}

function wallOf(zone: string, at: number): Wall {
  const p: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(new Date(at))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return { y: p.year, m: p.month, d: p.day, minute: (p.hour % 24) * 60 + p.minute, second: p.second };
}

/** The wall clock read as if it were UTC: comparable, and `at` plus the zone's offset. */
const wallMs = (w: Wall) => Date.UTC(w.y, w.m - 1, w.d, 0, w.minute, w.second);

const offsetAt = (zone: string, at: number) => wallMs(wallOf(zone, at)) - Math.floor(at / 1000) * 1000;

/**
 * The instant the zone's clocks show this date and minute; in a gap, the instant the clocks jump past it; in a
 * repeated hour, the first time.
 */
export function instantOf(zone: string, y: number, m: number, d: number, minute: number): number {
  const target = Date.UTC(y, m - 1, d, 0, minute);
  const offsets = new Set([offsetAt(zone, target - DAY), offsetAt(zone, target), offsetAt(zone, target + DAY)]);
  const candidates = [...offsets].map((o) => target - o);
  const exact = candidates.filter((t) => wallMs(wallOf(zone, t)) === target).sort((a, b) => a - b);
  if (exact.length) return exact[0];
  // A gap: the first minute whose wall clock is past the target.
  let lo = Math.min(...candidates);
  let hi = Math.max(...candidates);
  while (hi - lo > MINUTE) {
    const mid = lo + Math.floor((hi - lo) / 2 / MINUTE) * MINUTE;
    if (wallMs(wallOf(zone, mid)) >= target) hi = mid;
    else lo = mid;
  }
  return wallMs(wallOf(zone, lo)) >= target ? lo : hi;
}

export const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
const pad = (n: number) => String(n).padStart(2, '0');
const dateKey = (y: number, m: number, d: number) => `${y}-${pad(m)}-${pad(d)}`;

/** The spans of one local date: its exception's, else its weekday's. */
function spansOn(h: OpeningHours, y: number, m: number, d: number): Span[] {
  const key = dateKey(y, m, d);
  const exception = h.exceptions.find((e) => e.date === key);
  if (exception) return exception.hours;
  return h.weekly[WEEKDAYS[new Date(Date.UTC(y, m - 1, d)).getUTCDay()]] ?? [];
}

export function isOpenAt(h: OpeningHours, at: number): boolean {
  const w = wallOf(h.timeZone, at);
  return spansOn(h, w.y, w.m, w.d).some(([start, end]) => minutesOf(start) <= w.minute && w.minute < minutesOf(end));
}

/** The first instant after `at` at which the schedule opens; `at` itself when it is open then. */
export function nextOpening(h: OpeningHours, at: number, horizonDays = OPENING_HORIZON_DAYS): number | undefined {
  if (isOpenAt(h, at)) return at;
  const today = wallOf(h.timeZone, at);
  for (let i = 0; i <= horizonDays; i++) {
    const day = new Date(Date.UTC(today.y, today.m - 1, today.d + i));
    const [y, m, d] = [day.getUTCFullYear(), day.getUTCMonth() + 1, day.getUTCDate()];
    const starts = spansOn(h, y, m, d)
      .map(([start]) => minutesOf(start))
      .sort((a, b) => a - b);
    for (const start of starts) {
      const t = instantOf(h.timeZone, y, m, d, start);
      if (t > at && isOpenAt(h, t)) return t;
    }
  }
  return undefined;
}

/** "YYYY-MM-DD HH:mm" on the zone's clocks. */
export function localTime(zone: string, at: number): string {
  const w = wallOf(zone, at);
  return `${dateKey(w.y, w.m, w.d)} ${pad(Math.floor(w.minute / 60))}:${pad(w.minute % 60)}`;
}

/** Whether a "YYYY-MM-DD" names a real date. */
export function isDate(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (!m) return false;
  const day = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return day.getUTCFullYear() === Number(m[1]) && day.getUTCMonth() + 1 === Number(m[2]) && day.getUTCDate() === Number(m[3]);
}
