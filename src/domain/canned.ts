// Canned replies: a shop's (and its groups') named texts an agent sends with `#name` or `/reply name`
// (src/routing/commands.ts, src/routing/canned.ts). Names are short and plain so that `#name` can never be
// mistaken for a sentence: a letter first, then letters, digits, '-' or '_'. A text may use {visitor}, {agent}
// and {shop}, filled in when it is sent.

export const CANNED_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
export const CANNED_NAME_RULE = 'a lower-case letter, then up to 31 lower-case letters, digits, - or _';
export const CANNED_MAX = 200; // per shop, and per group
export const CANNED_TEXT_MAX = 2000;
export const CANNED_VALUES = ['visitor', 'agent', 'shop'] as const;

export type Canned = Record<string, string>;

/** Why a canned text is not acceptable (a placeholder it may not use), or undefined. */
export function cannedTextProblem(text: string): string | undefined {
  if (text.length === 0 || text.length > CANNED_TEXT_MAX) return `must be a string of 1 to ${CANNED_TEXT_MAX} characters`;
  const unknown = [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).find((n) => !(CANNED_VALUES as readonly string[]).includes(n));
  return unknown ? `uses {${unknown}}; it may use ${CANNED_VALUES.map((n) => `{${n}}`).join(', ')}` : undefined;
}

/**
 * The replies an agent may send in a session: the shop's, with those of the session's groups (comma-joined, as
 * Session.group) over them, the first group named winning.
 */
export function cannedFor(shop: { canned?: Canned; groups: { name: string; canned?: Canned }[] }, groupKey = ''): Canned {
  const named = groupKey ? groupKey.split(',') : [];
  const out: Canned = { ...shop.canned };
  for (const name of [...named].reverse()) Object.assign(out, shop.groups.find((g) => g.name === name)?.canned);
  return out;
}

/** The name a visitor is called by: the name its session carries, else its JID's local part. */
export function visitorName(jid: string, name?: string): string {
  return name?.trim() || (jid.includes('@') ? jid.slice(0, jid.indexOf('@')) : jid);
}

/** A canned text with its values filled in ({visitor}, {agent}, {shop}; any other brace text stays as written). */
export function fillCanned(text: string, values: Record<(typeof CANNED_VALUES)[number], string>): string {
  return text.replace(/\{(visitor|agent|shop)\}/g, (_, name: keyof typeof values) => values[name]);
}

/** Known names close to one not found: those it starts, or that start it, and those within two edits; at most five. */
export function closeNames(name: string, known: readonly string[]): string[] {
  const scored = known
    .map((k) => [k, k.startsWith(name) || name.startsWith(k) ? 0 : editDistance(name, k)] as const)
    .filter(([k, d]) => d <= Math.min(2, Math.max(1, Math.floor(k.length / 2))))
    .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  return scored.slice(0, 5).map(([k]) => k);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = row[j]!;
      row[j] = next;
    }
  }
  return row[b.length]!;
}
