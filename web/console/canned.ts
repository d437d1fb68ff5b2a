// The shop's canned replies in the reply box: typing `#` at the start lists them (from the shop's answer to
// `/canned`, src/routing/canned.ts: a notice whose lines are `#name — text`), more letters filter, Up/Down choose,
// Enter or Tab (or a click) sends `#name`, which the sidecar turns into the shop's text for the visitor. Escape
// closes the list. Asked once per shop after sign-in, and again for the shown conversation (a group may have its own).
import { type XElement, xml } from '@xmpp/client';
import { bare, h, newId } from '../shared/consult.js';
import { hooks } from './hooks.js';

const LINE = /^#([a-z][a-z0-9_-]{0,31}) — (.*)$/;
const replies = new Map<string, { name: string; text: string }[]>(); // shop -> replies
const asking = new Set<string>();

const input = document.querySelector('#reply-text') as HTMLTextAreaElement;
const form = document.querySelector('#reply') as HTMLFormElement;
const list = h('ul', { id: 'canned-list', class: 'canned-list', role: 'listbox', 'aria-label': 'Canned replies' });
list.hidden = true;
form.after(list);
input.setAttribute('aria-controls', 'canned-list');
input.setAttribute('aria-autocomplete', 'list');
let shown: { name: string; text: string }[] = [];
let chosen = 0;

function ask(shop: string, visitor?: string): void {
  const x = hooks.client();
  if (!x || asking.has(shop)) return;
  asking.add(shop);
  const attrs: Record<string, string> = { to: shop, type: 'chat', ...(visitor ? { realto: visitor } : {}) };
  void x.send(xml('message', attrs, xml('body', { id: newId() }, '/canned'))).catch(() => asking.delete(shop));
}

function onStanza(el: XElement): boolean {
  if (!el.is('message') || el.getChild('body')?.attrs.msgType !== '15') return false;
  const shop = bare(el.attrs.from);
  if (!asking.has(shop) || bare(el.attrs.realfrom) !== shop) return false;
  const lines = (el.getChildText('body') ?? '').split('\n');
  const parsed = lines.slice(1).map((l) => LINE.exec(l));
  if (lines.length > 1 && parsed.some((m) => !m)) return false; // another notice of the shop
  if (lines.length === 1 && !/canned|快捷回复/i.test(lines[0]!)) return false;
  asking.delete(shop);
  replies.set(
    shop,
    parsed.map((m) => ({ name: m![1]!, text: m![2]! })),
  );
  update();
  return true;
}

function close(): void {
  list.hidden = true;
  input.removeAttribute('aria-activedescendant');
}

function update(): void {
  const c = hooks.api().active();
  const m = /^#([a-z0-9_-]*)$/i.exec(input.value);
  if (!c || !m) {
    close();
    return;
  }
  const all = replies.get(c.shop);
  if (!all) {
    ask(c.shop, c.visitor);
    close();
    return;
  }
  shown = all.filter((r) => r.name.startsWith(m[1]!.toLowerCase()));
  if (!shown.length) {
    close();
    return;
  }
  chosen = Math.min(chosen, shown.length - 1);
  list.replaceChildren(
    ...shown.map((r, i) => {
      const li = h('li', { id: `canned-${r.name}`, role: 'option', 'aria-selected': String(i === chosen), 'data-name': r.name });
      li.append(h('span', { class: 'canned-name' }, `#${r.name}`), h('span', { class: 'canned-text' }, r.text));
      li.addEventListener('mousedown', (ev) => {
        ev.preventDefault(); // keep the focus in the reply box
        pick(r.name);
      });
      return li;
    }),
  );
  list.hidden = false;
  // No aria-expanded: a textarea (role textbox) does not support it (axe: aria-allowed-attr); the list's visibility and aria-activedescendant say it.
  input.setAttribute('aria-activedescendant', `canned-${shown[chosen]!.name}`);
}

function pick(name: string): void {
  input.value = `#${name}`;
  close();
  form.requestSubmit();
}

input.addEventListener('input', () => {
  chosen = 0;
  update();
});
// Capture on the form: runs before console.ts's Enter-to-send on the textarea.
form.addEventListener(
  'keydown',
  (ev) => {
    if (list.hidden || ev.target !== input) return;
    const k = ev.key;
    if (k === 'ArrowDown' || k === 'ArrowUp') chosen = (chosen + (k === 'ArrowDown' ? 1 : shown.length - 1)) % shown.length;
    else if ((k === 'Enter' && !ev.shiftKey && !ev.isComposing) || k === 'Tab') pick(shown[chosen]!.name);
    else if (k === 'Escape') close();
    else return;
    ev.preventDefault();
    ev.stopImmediatePropagation();
    if (!list.hidden) update();
  },
  true,
);
input.addEventListener('blur', close);
hooks.onStanza(onStanza);
hooks.onShown(() => update());
hooks.onOnline(async () => {
  for (const shop of hooks.api().shops()) ask(shop);
});
