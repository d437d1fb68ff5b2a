// The pre-chat form: the fields a shop lists (data-prechat="name,email") asked once before the first
// message; what the visitor enters becomes the consult's context. Kept done per shop in the frame's storage.
import { h } from '../shared/consult.js';
import type { PrechatKey } from './options.js';
import { type Locale, text } from './texts.js';

const INPUT_TYPE: Record<PrechatKey, string> = { name: 'text', email: 'email', phone: 'tel', order: 'text' };
const AUTOCOMPLETE: Record<PrechatKey, string> = { name: 'name', email: 'email', phone: 'tel', order: 'off' };

export interface Prechat {
  element: HTMLFormElement;
  /** True until the visitor sent the form (or it asks nothing). */
  needed(): boolean;
  relabel(locale: Locale): void;
}

export function prechatForm(
  shop: string,
  keys: PrechatKey[],
  locale: Locale,
  done: (values: Partial<Record<PrechatKey, string>>) => void,
): Prechat {
  const storeKey = `consult.prechat:${shop}`;
  let sent = keys.length === 0;
  try {
    if (localStorage.getItem(storeKey) === 'done') sent = true;
  } catch {
    /* no storage: ask again */
  }
  const form = h('form', { class: 'cw-prechat', 'aria-labelledby': 'cw-prechat-title' });
  const title = h('p', { id: 'cw-prechat-title', class: 'cw-prechat-title' });
  form.append(title);
  const labels: [PrechatKey, HTMLLabelElement][] = [];
  for (const k of keys) {
    const label = h('label', { for: `cw-pre-${k}` });
    const input = h('input', { id: `cw-pre-${k}`, name: k, type: INPUT_TYPE[k], autocomplete: AUTOCOMPLETE[k], maxlength: '256' });
    if (k === 'name') input.required = true;
    labels.push([k, label]);
    form.append(label, input);
  }
  const start = h('button', { type: 'submit', class: 'cw-prechat-start' });
  form.append(start);
  const relabel = (l: Locale) => {
    title.textContent = text(l, 'prechatTitle');
    for (const [k, label] of labels) label.textContent = text(l, k);
    start.textContent = text(l, 'prechatStart');
  };
  relabel(locale);
  form.hidden = sent;
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const values: Partial<Record<PrechatKey, string>> = {};
    for (const k of keys) values[k] = (form.elements.namedItem(k) as HTMLInputElement).value.trim();
    sent = true;
    form.hidden = true;
    try {
      localStorage.setItem(storeKey, 'done');
    } catch {
      /* fine */
    }
    done(values);
  });
  return { element: form, needed: () => !sent, relabel };
}
