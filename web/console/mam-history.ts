// Conversations that survive a reload (and show on another device): after sign-in the console asks ejabberd's
// archive of the agent's own account (XEP-0313, mod_mam, over the same WebSocket) for its latest messages with each
// shop, and rebuilds its tabs from them: the visitor's lines relayed by the shop (realfrom = the visitor), the
// agent's own replies to the shop (realto = the visitor), the server's notices. Commands (`/…`), acks and readmarks
// are left out. Needs mod_mam on the agents' domain with `default: always` (docs/web.md).
import { type XElement, xml } from '@xmpp/client';
import { NS_LINE, bare, newId } from '../shared/consult.js';
import { hooks, type RestoredEntry } from './hooks.js';

const NS_MAM = 'urn:xmpp:mam:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
/** The shim keeps the stanza as sent (with the seed's attributes) in this child of what ejabberd archives. */
const NS_RAW = 'urn:xmpp:consult:raw:0';
/** The newest this many messages per shop. */
export const MAM_PAGE = 200;

const collecting = new Map<string, { shop: string; found: Map<string, RestoredEntry[]> }>();

function atOf(forwarded: XElement, m: XElement): number {
  const stamp = forwarded.getChild('delay', 'urn:xmpp:delay')?.attrs.stamp;
  return Number(m.attrs.msec_times) || (stamp ? Date.parse(stamp) : Date.now());
}

/** One archived message as a console line and its visitor, or undefined when it is not one the console shows. */
function lineOf(shop: string, forwarded: XElement): [string, RestoredEntry] | undefined {
  const archived = forwarded.getChild('message');
  const m = archived?.getChild('raw', NS_RAW)?.getChild('message') ?? archived;
  const body = m?.getChild('body');
  if (!m || !body) return undefined;
  const type = m.attrs.type ?? 'normal';
  if (type === 'mstat' || type === 'readmark' || type === 'error' || type === 'revoke') return undefined;
  const text = body.text();
  const at = atOf(forwarded, m);
  if (bare(m.attrs.from) === hooks.api().me()) {
    // The agent's own line: the visitor and id from our child (ejabberd dropped realto and the body id).
    const line = m.getChild('line', NS_LINE);
    const visitor = bare(line?.attrs.visitor);
    if (!line || !visitor || bare(m.attrs.to) !== shop || text.startsWith('/')) return undefined;
    return [visitor, { id: line.attrs.id || newId(), who: 'me', text, at }];
  }
  const id = body.attrs.id || newId();
  const realfrom = bare(m.attrs.realfrom);
  const realto = bare(m.attrs.realto);
  if (!realfrom || bare(m.attrs.from) !== shop) return undefined;
  const visitor = m.attrs.qchatid === '5' && realto ? realto : realfrom;
  if (visitor === shop) return undefined; // the shop's answers to commands
  if (m.getChild('history', 'urn:xmpp:consult:history:0')) return undefined; // the visitor panel's
  if (body.attrs.msgType === '15') return [visitor, { id, who: 'system', text, at }];
  if (realfrom !== visitor) return [visitor, { id, who: 'other', text, at, from: realfrom.split('@')[0] }];
  return [visitor, { id, who: 'visitor', text, at }];
}

function onStanza(el: XElement): boolean {
  const result = el.is('message') ? el.getChild('result', NS_MAM) : undefined;
  const q = result && collecting.get(result.attrs.queryid ?? '');
  if (!result || !q) return false;
  const forwarded = result.getChild('forwarded', NS_FORWARD);
  const line = forwarded && lineOf(q.shop, forwarded);
  if (line) q.found.set(line[0], [...(q.found.get(line[0]) ?? []), line[1]]);
  return true;
}

const NO_MAM = new Set(['service-unavailable', 'feature-not-implemented']);

async function load(shop: string): Promise<void> {
  const x = hooks.client();
  if (!x) return;
  const queryid = newId().slice(0, 12);
  collecting.set(queryid, { shop, found: new Map() });
  const form = xml(
    'x',
    { xmlns: 'jabber:x:data', type: 'submit' },
    xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_MAM)),
    xml('field', { var: 'with' }, xml('value', {}, shop)),
  );
  const rsm = xml('set', { xmlns: 'http://jabber.org/protocol/rsm' }, xml('max', {}, String(MAM_PAGE)), xml('before', {}));
  try {
    await x.iqCaller.request(xml('iq', { type: 'set', id: newId() }, xml('query', { xmlns: NS_MAM, queryid }, form, rsm)), 15_000);
    for (const [visitor, entries] of collecting.get(queryid)!.found) hooks.api().restore(shop, visitor, entries);
  } catch (e) {
    // A server without MAM (it is optional, docs/web.md) simply has no history to give: nothing to tell the agent.
    if (NO_MAM.has((e as { condition?: string }).condition ?? '')) return;
    hooks.api().notice(`History not loaded from the archive (${(e as Error).message || 'no answer'}).`);
  } finally {
    collecting.delete(queryid);
  }
}

hooks.onStanza(onStanza);
hooks.onOnline(async () => {
  await Promise.all(hooks.api().shops().map(load));
});
