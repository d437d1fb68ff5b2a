// The shop a request names, looked up once for every admin route: 404 when it is no shop, and for what only the
// deciding sidecar holds (sessions, queue, left messages) NotOwner, which http.ts answers with 421.
import type { Shop } from '../domain/shop.js';
import { NotOwner, type Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import { HttpError } from './problem.js';

export interface ShopLookup {
  /** The shop, or 404. */
  requireShop(jid: string): Shop;
  /** A shop this sidecar decides, or 404 / NotOwner. */
  requireOwned(jid: string): Shop;
}

export function shopLookup(directory: Directory, desk: Desk): ShopLookup {
  const requireShop = (jid: string): Shop => {
    const shop = directory.shop(jid);
    if (!shop) throw new HttpError(404, `${jid} is not a shop`);
    return shop;
  };
  const requireOwned = (jid: string): Shop => {
    const shop = requireShop(jid);
    if (!desk.shops.owns(shop.jid)) throw new NotOwner(shop.jid);
    return shop;
  };
  return { requireShop, requireOwned };
}
