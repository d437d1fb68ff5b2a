// The loader on a shop's page (another origin than ours): a launcher button with the unread badge, and an
// iframe of our widget page (widget.html) in which the XMPP client and the visitor's credentials live, out of
// reach of the page's scripts (the same-origin policy). It talks to the frame with postMessage only.
import { h } from '../shared/consult.js';
import { type Command, type Event, installApi, isProtocol } from './api.js';
import { COLOUR_VARS, optionsQuery, type WidgetOptions } from './options.js';
import { type Locale, text } from './texts.js';

export function mountLoader(o: WidgetOptions, base: URL): void {
  document.head.append(h('link', { rel: 'stylesheet', href: new URL('widget.css', base).href }));
  const root = h('div', { class: 'cw-root cw-host', 'data-position': o.position });
  for (const [k, v] of Object.entries(o.colours)) root.style.setProperty(k, v);
  const launcher = h('button', { type: 'button', class: 'cw-launcher', 'aria-expanded': 'false', 'aria-controls': 'cw-frame' });
  const label = h('span', {});
  const badge = h('span', { class: 'cw-badge', hidden: '' });
  launcher.append(label, badge);
  root.append(launcher);
  document.body.append(root);

  // Colours the shop set on .cw-root in its own CSS go into the frame too.
  const style = getComputedStyle(root);
  for (const v of Object.values(COLOUR_VARS)) {
    const given = style.getPropertyValue(v).trim();
    if (given && !o.colours[v]) o.colours[v] = given;
  }
  const frameOrigin = base.origin;
  const frame = h('iframe', {
    id: 'cw-frame',
    class: 'cw-frame',
    title: o.title ?? text(o.locale, 'title'),
    src: `${new URL('widget.html', base).href}?${optionsQuery(o, location.origin)}`,
    hidden: '',
  });
  root.append(frame);

  let locale: Locale = o.locale;
  let open = false;
  let unread = 0;
  let ready = false;
  const queue: Command[] = [];
  const post = (c: Command) => {
    if (!ready) queue.push(c);
    else frame.contentWindow?.postMessage(c, frameOrigin);
  };
  const relabel = () => {
    label.textContent = text(locale, 'launcher');
    badge.setAttribute('aria-label', `${unread} ${text(locale, 'unread')}`);
  };
  relabel();
  const show = (now: boolean, fromFrame: boolean) => {
    if (now === open) return;
    open = now;
    frame.hidden = !now;
    launcher.setAttribute('aria-expanded', String(now));
    if (!fromFrame) post({ cw: 1, type: now ? 'open' : 'close' });
    if (now) frame.focus();
    else if (fromFrame && document.activeElement === frame) launcher.focus();
    emit.emit('open', now);
  };
  const emit = installApi({
    open: () => show(true, false),
    close: () => show(false, false),
    toggle: () => show(!open, false),
    setUser: (user) => post({ cw: 1, type: 'user', user }),
    setFields: (fields) => post({ cw: 1, type: 'fields', fields }),
    setProduct: (product) => post({ cw: 1, type: 'product', product }),
    setLocale: (l) => {
      locale = l;
      relabel();
      post({ cw: 1, type: 'locale', locale: l });
    },
  });
  launcher.addEventListener('click', () => show(!open, false));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && open) show(false, false);
  });

  window.addEventListener('message', (ev: MessageEvent) => {
    if (ev.source !== frame.contentWindow || ev.origin !== frameOrigin || !isProtocol(ev.data)) return;
    const e = ev.data as Event | { cw: 1; type: 'ready' };
    if (e.type === 'ready') {
      ready = true;
      for (const c of queue.splice(0)) post(c);
      if (open) post({ cw: 1, type: 'open' });
    } else if (e.type === 'state') {
      show(e.open, true);
      if (e.unread !== unread) {
        unread = e.unread;
        badge.hidden = unread === 0 || open;
        badge.textContent = String(unread);
        relabel();
        emit.emit('unread', unread);
      }
      badge.hidden = unread === 0 || open;
    } else if (e.type === 'message') emit.emit('message', e.message);
  });
  if (o.open) show(true, false);
}
