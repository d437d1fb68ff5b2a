// The config most desk and admin tests start from: one shop, shop_1@<domain> named "Shop One", admin@<domain> as the
// system JID, and the agents the test names.
import { type Config, parseConfig } from '../../src/domain/config.js';

export interface OneShop {
  /** The shop's agents: name (the JID's local part) → maxSessions. */
  agents: Record<string, number>;
  /** More fields of the shop (language, groups, supervisors, …). */
  shop?: Record<string, unknown>;
  /** More fields of the config (timers, archive, …). */
  config?: Record<string, unknown>;
}

export function oneShopConfig(domain: string, o: OneShop): Config {
  const jid = (name: string) => `${name}@${domain}`;
  return parseConfig({
    systemJid: jid('admin'),
    ...o.config,
    shops: [
      {
        jid: jid('shop_1'),
        name: 'Shop One',
        ...o.shop,
        agents: Object.entries(o.agents).map(([name, maxSessions]) => ({ jid: jid(name), maxSessions })),
      },
    ],
  });
}
