// The widget's options: from the script tag's data-* attributes on a shop's page, or, inside the frame
// (widget.html), from the frame's query string, which the loader writes from the same attributes.
import { type Locale, localeOf } from './texts.js';

/** The pre-chat form may ask for these (they become the consult's context, urn:xmpp:consult:context:0). */
export const PRECHAT_KEYS = ['name', 'email', 'phone', 'order'] as const;
export type PrechatKey = (typeof PRECHAT_KEYS)[number];

export interface WidgetOptions {
  shop: string;
  product?: string;
  locale: Locale;
  position: 'right' | 'left';
  prechat: PrechatKey[];
  title?: string;
  open: boolean;
  /** In the frame: the address of the shop's page it is on (sent as the context's page). */
  page?: string;
  /** Colours given as CSS custom properties, e.g. { '--cw-accent': '#c2185b' }. */
  colours: Record<string, string>;
}

/** The custom properties a shop may set (data-accent, data-accent-text; or on .cw-root in its own CSS). */
export const COLOUR_VARS = { accent: '--cw-accent', accentText: '--cw-accent-text' } as const;
const COLOUR = /^(#[0-9a-fA-F]{3,8}|(rgb|hsl)a?\([0-9., %]+\)|[a-zA-Z]{3,20})$/;

export const isColour = (v: string | undefined | null): v is string => !!v && COLOUR.test(v.trim());

/** Reads options from any string map (a script's dataset, or URLSearchParams turned into an object). */
export function readOptions(get: (k: string) => string | undefined | null): WidgetOptions {
  const shop = (get('shop') ?? '').split('/')[0]!;
  if (!shop.includes('@')) throw new Error('consult widget: data-shop="shop@domain" is required');
  const product = get('product')?.trim();
  const prechat = (get('prechat') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s): s is PrechatKey => (PRECHAT_KEYS as readonly string[]).includes(s));
  const colours: Record<string, string> = {};
  for (const [k, v] of Object.entries(COLOUR_VARS)) {
    const raw = get(k) ?? get(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`));
    if (isColour(raw)) colours[v] = raw.trim();
  }
  return {
    shop,
    product: product || undefined,
    locale: localeOf(get('lang')),
    position: get('position') === 'left' ? 'left' : 'right',
    prechat: [...new Set(prechat)],
    title: get('title') || undefined,
    open: get('open') === 'true',
    page: get('page') || undefined,
    colours,
  };
}

/** The query string the loader gives the frame: the same options, flat. */
export function optionsQuery(o: WidgetOptions, parentOrigin: string): string {
  const q = new URLSearchParams({ shop: o.shop, lang: o.locale, position: o.position, parent: parentOrigin, page: location.href });
  if (o.product) q.set('product', o.product);
  if (o.prechat.length) q.set('prechat', o.prechat.join(','));
  if (o.title) q.set('title', o.title);
  for (const [k, v] of Object.entries(COLOUR_VARS)) if (o.colours[v]) q.set(k, o.colours[v]);
  return q.toString();
}
