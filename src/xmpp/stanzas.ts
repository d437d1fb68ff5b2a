// Builders for the stanzas the sidecar sends, shaped exactly like QChat's consult requirement (docs/behaviour.md).
import { randomUUID } from 'node:crypto';
import { cloneNode, el, findChild, type XmlElement } from './xml.js';

/**
 * The JSON object a client's channelid holds (`{"cn":"consult","d":"send",…,"pid":…}`), or undefined when it has
 * none or it is not an object: routing reads `pid` from it, the visitor context its own keys.
 */
export function channelFields(stanza: XmlElement): Record<string, unknown> | undefined {
  const raw = stanza.attrs.channelid;
  if (!raw) return undefined;
  try {
    const parsed: unknown = JSON.parse(raw);
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** channelid of every stanza the server relays or creates (key order as in the seed). */
export const CHANNEL_RECV = JSON.stringify({ d: 'recv', usrType: 'usr', cn: 'consult' });
export const QCHAT_TO_AGENT = '4';
export const QCHAT_TO_VISITOR = '5';

export const serverMessageId = () => `qcadmin${randomUUID().replace(/-/g, '')}`;
export const generatedBodyId = () => `add_${randomUUID().replace(/-/g, '')}`;

/** Attributes the server owns on a relayed consult message; a client's values are discarded. */
const SERVER_ATTRS = new Set([
  'xmlns',
  'from',
  'to',
  'type',
  'realfrom',
  'realto',
  'channelid',
  'qchatid',
  'msec_times',
  'auto_reply',
  'no_update_msg_log',
  'carbon_message',
]);

export interface RelayAddress {
  shop: string;
  to: string; // also its realto: the real person behind the address
  realfrom: string;
  qchatid: string;
  now: number;
}

/**
 * A client's message re-addressed by the server; children (body attributes included) are kept. The relay takes the
 * original's children over rather than copying them: callers are done with the original. A QChat revoke stays a
 * revoke (the clients act on its type); anything else becomes consult.
 */
export function relay(original: XmlElement, a: RelayAddress, type = original.attrs.type === 'revoke' ? 'revoke' : 'consult'): XmlElement {
  const kept = Object.fromEntries(Object.entries(original.attrs).filter(([k]) => !SERVER_ATTRS.has(k)));
  return el(
    'message',
    {
      xmlns: 'jabber:client',
      from: a.shop,
      to: a.to,
      type,
      realfrom: a.realfrom,
      realto: a.to,
      channelid: CHANNEL_RECV,
      qchatid: a.qchatid,
      msec_times: String(a.now),
      ...kept,
    },
    original.children,
  );
}

/** The mstat ack: no from, like QChat's server ack. */
export function ack(to: string, bodyId: string, now: number): XmlElement {
  return el('message', { xmlns: 'jabber:client', type: 'mstat', msec_times: String(now), to }, [el('body', { id: bodyId, stat: 'sent' })]);
}

/** What an ack is made of, for a shim that writes it itself (the structured verdict). */
export interface AckFields {
  to: string;
  bodyId: string;
  msecTimes: string;
}

const ACK_ATTRS = ['xmlns', 'type', 'msec_times', 'to'];
const ACK_BODY_ATTRS = ['id', 'stat'];
const hasKeys = (attrs: Record<string, string>, keys: string[]) => {
  const own = Object.keys(attrs);
  return own.length === keys.length && own.every((k, i) => k === keys[i]);
};

/** The fields of an element exactly as ack() builds it, or undefined for anything else (routed as XML then). */
export function ackFields(x: XmlElement): AckFields | undefined {
  const a = x.attrs;
  if (x.name !== 'message' || a.type !== 'mstat' || a.xmlns !== 'jabber:client' || !hasKeys(a, ACK_ATTRS)) return undefined;
  const body = x.children.length === 1 ? x.children[0] : undefined;
  if (typeof body !== 'object' || body.name !== 'body' || body.children.length > 0) return undefined;
  if (body.attrs.stat !== 'sent' || !hasKeys(body.attrs, ACK_BODY_ATTRS)) return undefined;
  return { to: a.to, bodyId: body.attrs.id, msecTimes: a.msec_times };
}

export interface AutoReply {
  shop: string;
  visitor: string;
  realfrom: string;
  text: string;
  now: number;
}

/** Welcome / no-agent auto reply to a visitor (seed: qchatid 5, auto_reply, no_update_msg_log, maType 3). */
export function autoReply(r: AutoReply): XmlElement {
  return serverMessage(
    { shop: r.shop, to: r.visitor, realfrom: r.realfrom, qchatid: QCHAT_TO_VISITOR, text: r.text, now: r.now, autoReply: true },
    '1',
    [el('active', {})],
  );
}

/** The body id to ack, generating (and writing) one when the client sent none. */
export function ensureBodyId(message: XmlElement): string | undefined {
  const body = findChild(message, 'body');
  if (!body) return undefined;
  body.attrs.id ||= generatedBodyId();
  return body.attrs.id;
}

/** The same stanza without realfrom/realto, which only the server may set. */
export function withoutRealAddresses(message: XmlElement): XmlElement {
  const { realfrom: _f, realto: _t, ...attrs } = message.attrs;
  return { ...message, attrs };
}

export interface Notice {
  shop: string;
  to: string; // also its realto: a server message is always for the person it is addressed to
  realfrom: string;
  qchatid: string;
  text: string;
  now: number;
  autoReply?: boolean;
}

/** A system notice (queue, close, transfer, reminder): QChat's msgType 15, never counted as activity. */
export function notice(n: Notice): XmlElement {
  return serverMessage(n, '15');
}

/** The shop's bot answering a visitor: QChat's robot answer, msgType 47. */
export function botReply(n: Notice): XmlElement {
  return serverMessage(n, '47');
}

export const RATING_NS = 'urn:xmpp:consult:rating:0';

/** After a close: the rating request, a notice with a machine-readable child a widget can turn into buttons. */
export function ratingRequest(n: Notice, session: string): XmlElement {
  return serverMessage(n, '15', [el('rating', { xmlns: RATING_NS, session, min: '1', max: '5' })]);
}

/** What the server says itself, from the shop: welcome, no-agent text, notices (the seed's attribute order). */
function serverMessage(n: Notice, msgType: string, trailer: XmlElement[] = []): XmlElement {
  return el(
    'message',
    {
      xmlns: 'jabber:client',
      from: n.shop,
      to: n.to,
      msec_times: String(n.now),
      realfrom: n.realfrom,
      realto: n.to,
      type: 'consult',
      channelid: CHANNEL_RECV,
      qchatid: n.qchatid,
      auto_reply: String(n.autoReply ?? false),
      no_update_msg_log: 'true',
    },
    [el('body', { id: serverMessageId(), msgType, maType: '3' }, [n.text]), ...trailer],
  );
}

/** A past message of a session replayed to another agent, marked as history (XEP-0203 delay). */
export function replay(past: XmlElement, to: string, at: number, shop: string): XmlElement {
  const copy = cloneNode(past);
  copy.attrs.to = to;
  copy.attrs.no_update_msg_log = 'true';
  copy.children.push(el('delay', { xmlns: 'urn:xmpp:delay', from: shop, stamp: new Date(at).toISOString() }));
  return copy;
}
