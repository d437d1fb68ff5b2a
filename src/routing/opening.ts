// Which opening hours and which maximum wait apply to a group key. A key's groups may have hours of their own (a
// group without them follows the shop's): the key is open while any of them is. Without hours a shop is always open.
import { type OpeningHours, isOpenAt, localTime, nextOpening } from '../domain/hours.js';
import type { Shop } from '../domain/shop.js';
import { groupsOf } from './groups.js';

function hoursFor(shop: Shop, key: string): (OpeningHours | undefined)[] {
  const groups = groupsOf(shop, key);
  return groups.length ? groups.map((g) => g.hours ?? shop.hours) : [shop.hours];
}

export function isOpen(shop: Shop, key: string, at: number): boolean {
  return hoursFor(shop, key).some((h) => !h || isOpenAt(h, at));
}

/** When the key opens next, and in which zone to say it; undefined: not within a year. */
export function opensNext(shop: Shop, key: string, at: number): { at: number; zone: string } | undefined {
  let best: { at: number; zone: string } | undefined;
  for (const h of hoursFor(shop, key)) {
    if (!h) return { at, zone: 'UTC' };
    const t = nextOpening(h, at);
    if (t !== undefined && (!best || t < best.at)) best = { at: t, zone: h.timeZone };
  }
  return best;
}

/** An instant as the key's clocks show it ("YYYY-MM-DD HH:mm"; with " UTC" when it has no hours). */
export function localTimeFor(shop: Shop, key: string, at: number): string {
  const zone = hoursFor(shop, key).find((h) => h)?.timeZone;
  return zone ? localTime(zone, at) : `${localTime('UTC', at)} UTC`;
}

/**
 * The groups whose hours a new consult follows: those its product maps to, else the default group, else the shop
 * (whether or not anyone staffs them now: routeKey's fallbacks are about who is online, not about the hours).
 */
export function hoursKey(shop: Shop, product: string | undefined): string {
  const mapped = product ? shop.groups.filter((g) => g.products.includes(product)) : [];
  if (mapped.length) return mapped.map((g) => g.name).join(',');
  return shop.groups.find((g) => g.isDefault)?.name ?? '';
}

/** The maximum wait in the queue of `key`, in seconds: its first group that sets one, else the shop's; 0: none. */
export function maxWaitOf(shop: Shop, key: string): number {
  return groupsOf(shop, key).find((g) => g.queueMaxWaitSec !== undefined)?.queueMaxWaitSec ?? shop.queueMaxWaitSec ?? 0;
}

/** Who may take a left message of `key` now: its groups while one of them is staffed, else the default group, else any agent. */
export function handOutKey(shop: Shop, key: string, assignable: (agent: string) => boolean): string {
  const staffed = (names: string) => groupsOf(shop, names).some((g) => g.agents.some(assignable));
  if (!key || staffed(key)) return key;
  const dflt = shop.groups.find((g) => g.isDefault)?.name;
  return dflt && staffed(dflt) ? dflt : '';
}
