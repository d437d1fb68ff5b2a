// QChat consult stanzas as the browser pages send them (requirements-seed.md), and small helpers.
import { xml, type XElement } from '@xmpp/client';

export const CHANNEL_SEND = '{"cn":"consult","d":"send","usrType":"usr"}';
export const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
/** Structured answers of the sidecar to `/sessions` (src/routing/agent-info.ts). */
export const NS_AGENT_INFO = 'urn:xmpp:consult:agent:0';

export const bare = (jid: string | undefined): string => (jid ?? '').split('/')[0]!;

/** A 32-hex-digit id like the seed's body ids. */
export function newId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
}

/** The visitor's message to a shop: the seed's first stanza. */
export function visitorMessage(o: { shop: string; me: string; realto: string; id: string; text: string }): XElement {
  return xml(
    'message',
    {
      type: 'consult',
      to: o.shop,
      realfrom: o.me,
      realto: o.realto,
      channelid: CHANNEL_SEND,
      qchatid: '4',
      isHiddenMsg: '0',
    },
    xml('body', { msgType: '1', maType: '6', id: o.id }, o.text),
    xml('active', { xmlns: NS_CHATSTATES }),
  );
}

/**
 * Which visitor and body id an agent's line was for, as a child: ejabberd's archive (mod_mam) keeps unknown
 * children but not the seed's attributes (realto, the body id), so the console finds its own lines again there.
 */
export const NS_LINE = 'urn:xmpp:consult:line:0';

/** An agent's message to a shop for one visitor: the seed's reply, always with realto. */
export function agentMessage(o: { shop: string; visitor: string; id: string; text: string }): XElement {
  return xml(
    'message',
    { to: o.shop, realto: o.visitor, type: 'chat', isHiddenMsg: '0' },
    xml('body', { id: o.id, maType: '6', msgType: '1' }, o.text),
    xml('active', { xmlns: NS_CHATSTATES }),
    xml('line', { xmlns: NS_LINE, visitor: o.visitor, id: o.id }),
  );
}

/** A readmark for messages seen (seed: read_type 3, a JSON list of ids), through the shop. */
export function readmark(o: { to: string; realto?: string; ids: string[] }): XElement {
  return xml(
    'message',
    { type: 'readmark', read_type: '3', to: o.to, ...(o.realto ? { realto: o.realto } : {}) },
    xml('body', { msgType: '1', maType: '3' }, JSON.stringify(o.ids.map((id) => ({ id })))),
  );
}

/** Ids in a readmark's body, or [] when it is not one. */
export function readmarkIds(el: XElement): string[] {
  try {
    const list = JSON.parse(el.getChildText('body') ?? '[]') as Array<{ id?: unknown }>;
    return Array.isArray(list) ? list.map((x) => String(x?.id ?? '')).filter(Boolean) : [];
  } catch {
    return [];
  }
}

/** An element with text only: message text is never parsed as HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function timeOf(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** What the static server says about where ejabberd is (web/server: /config.json). */
export interface WebConfig {
  service: string; // ws://127.0.0.1:<port>/ws
  domain: string; // agents and shops
  visitorDomain: string; // visitors register here
  shops?: string[]; // the console asks these for its sessions
}

export async function loadConfig(base: URL): Promise<WebConfig> {
  const res = await fetch(new URL('config.json', base), { cache: 'no-store' });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  return (await res.json()) as WebConfig;
}
