// The visitor panel beside the conversation: who the visitor is (the server's urn:xmpp:consult:context:0 child, on a
// context notice, a relayed message or a /sessions entry: src/routing/context.ts), the page and product it came
// from, and its earlier sessions with their ratings (`/history`, answered with urn:xmpp:consult:history:0:
// src/routing/history.ts, asked once per conversation when it is first shown). Also the agent's own state from the
// /sessions answer (status, missed chats: src/routing/agent-info.ts). All in band; text only via textContent.
import { type XElement, xml } from '@xmpp/client';
import { NS_AGENT_INFO, bare, h, newId } from '../shared/consult.js';
import { hooks } from './hooks.js';

const NS_CONTEXT = 'urn:xmpp:consult:context:0';
const NS_HISTORY = 'urn:xmpp:consult:history:0';
const LABELS: Record<string, string> = { name: 'Name', email: 'Email', phone: 'Phone', page: 'Page', order: 'Order' };

interface Earlier {
  started: number;
  agent: string;
  rating?: string;
  first: string;
}
const contexts = new Map<string, [string, string][]>();
const earlier = new Map<string, Earlier[]>();
const asked = new Set<string>();
const wasClosed = new Map<string, boolean>();
const keyOf = (shop: string, visitor: string) => `${shop}|${visitor}`;

const panel = h('section', { id: 'visitor-panel', class: 'visitor-panel', 'aria-labelledby': 'visitor-panel-title' });
const agentState = h('p', { id: 'agent-state', class: 'agent-state', role: 'status' });

function entriesOf(ctx: XElement): [string, string][] {
  return ctx.children
    .filter((c): c is XElement => typeof c !== 'string')
    .map((c) => [c.name === 'field' ? (c.attrs.var ?? 'field') : c.name, c.text()] as [string, string]);
}

function render(c: { shop: string; visitor: string } | undefined): void {
  panel.replaceChildren();
  panel.hidden = !c;
  document.querySelector('#app')?.classList.toggle('with-panel', !!c);
  if (!c) return;
  const key = keyOf(c.shop, c.visitor);
  reopened(key, hooks.api().active()?.closed === true);
  panel.append(h('h2', { id: 'visitor-panel-title' }, 'Visitor'));
  const dl = h('dl', { class: 'visitor-context' });
  const ctx = contexts.get(key) ?? [];
  dl.append(h('dt', {}, 'Account'), h('dd', {}, c.visitor));
  for (const [k, v] of ctx) {
    dl.append(h('dt', {}, LABELS[k] ?? k));
    const dd = h('dd', { 'data-key': k });
    if (k === 'page' && /^https?:\/\//i.test(v)) dd.append(h('a', { href: v, target: '_blank', rel: 'noopener noreferrer' }, v));
    else dd.textContent = v;
    dl.append(dd);
  }
  panel.append(dl);
  if (!ctx.length) panel.append(h('p', { class: 'hint' }, 'No context sent.'));
  panel.append(h('h3', {}, 'Earlier sessions'));
  const list = earlier.get(key);
  if (!list) panel.append(h('p', { class: 'hint' }, 'Asking the archive…'));
  else if (!list.length) panel.append(h('p', { class: 'hint' }, 'None.'));
  else {
    const ol = h('ol', { class: 'earlier' });
    for (const s of list) {
      const li = h('li', {});
      const when = new Date(s.started).toISOString().slice(0, 16).replace('T', ' ');
      li.append(h('span', { class: 'when' }, `${when} · ${s.agent.split('@')[0]}`));
      li.append(h('span', { class: 'rating' }, s.rating ? `rated ${s.rating}/5` : 'not rated'));
      if (s.first) li.append(h('span', { class: 'first' }, s.first));
      ol.append(li);
    }
    panel.append(ol);
  }
  askHistory(c.shop, c.visitor);
}

/** A conversation that was closed and is open again is a new session: its earlier ones changed. */
function reopened(key: string, closed: boolean): void {
  if (wasClosed.get(key) === true && !closed) {
    asked.delete(key);
    earlier.delete(key);
  }
  wasClosed.set(key, closed);
}

function askHistory(shop: string, visitor: string): void {
  const key = keyOf(shop, visitor);
  const x = hooks.client();
  if (asked.has(key) || !x) return;
  asked.add(key);
  void x
    .send(xml('message', { to: shop, type: 'chat', realto: visitor }, xml('body', { id: newId() }, `/history ${visitor}`)))
    .catch(() => asked.delete(key));
}

function current(): { shop: string; visitor: string } | undefined {
  return hooks.api().active();
}
function rerender(key: string): void {
  const c = current();
  if (c && keyOf(c.shop, c.visitor) === key) render(c);
}

function onStanza(el: XElement): boolean {
  if (!el.is('message')) return false;
  const shop = bare(el.attrs.from);
  const info = el.getChild('info', NS_AGENT_INFO);
  if (info) {
    for (const s of info.getChildren('session')) {
      const ctx = s.getChild('context', NS_CONTEXT);
      if (ctx) contexts.set(keyOf(shop, bare(s.attrs.visitor)), entriesOf(ctx));
    }
    const missed = info.attrs.missed !== undefined ? ` · missed ${info.attrs.missed} (${info.attrs.missedInRow ?? 0} in a row)` : '';
    agentState.textContent = `${shop.split('@')[0]}: ${info.attrs.status ?? ''}${missed}`;
    agentState.dataset.missed = info.attrs.missed ?? '0';
    const sel = document.querySelector('#status') as HTMLSelectElement | null;
    if (sel && info.attrs.status && [...sel.options].some((o) => o.value === info.attrs.status)) sel.value = info.attrs.status;
    return false; // console.ts lists the sessions
  }
  const visitor = bare(el.attrs.realfrom);
  const history = el.getChild('history', NS_HISTORY);
  if (history) {
    const v = bare(history.attrs.visitor) || visitor;
    const key = keyOf(shop, v);
    earlier.set(
      key,
      history.getChildren('session').map((s) => ({
        started: Number(s.attrs.started),
        agent: s.attrs.agent ?? '',
        rating: s.attrs.rating,
        first: s.getChildText('first') ?? '',
      })),
    );
    rerender(key);
    return true; // shown here, not as a line of the conversation
  }
  const ctx = el.getChild('context', NS_CONTEXT);
  if (ctx && visitor && visitor !== shop) {
    const key = keyOf(shop, visitor);
    contexts.set(key, entriesOf(ctx));
    rerender(key);
  }
  return false;
}

document.querySelector('#app')?.append(panel);
document.querySelector('.controls')?.append(agentState);
panel.hidden = true;
hooks.onStanza(onStanza);
hooks.onShown(render);
