// The visitor widget: one script tag on a shop's page,
//   <script src="https://…/widget.js" data-shop="shop_2@localhost" async></script>
// It registers a random account on the visitor vhost once (XEP-0077 in-band registration) and keeps
// the credentials in localStorage, so a returning visitor in the same browser keeps its JID, its
// history (kept here too) and its sticky agent. It sends the seed's consult stanzas over WebSocket.
// Every message text is written with textContent, never parsed as HTML.
import { client, xml, type XElement, type XmppClient } from '@xmpp/client';
import { bare, h, loadConfig, newId, readmark, readmarkIds, timeOf, visitorMessage, type WebConfig } from '../shared/consult.js';
import { type Emitter, installApi, type WidgetControl } from './api.js';
import { type FrameLink, linkToParent } from './frame.js';
import { mountLoader } from './loader.js';
import { readOptions, type WidgetOptions } from './options.js';
import { prechatForm } from './prechat.js';
import { type Locale, type TextKey, text } from './texts.js';
import { VisitorContext } from './visitor-context.js';
import { type Attachment, widgetMedia } from './media.js';
import { chatStateOf } from '../shared/chatstates.js';
import { asAttachment, attachmentOf } from '../shared/upload.js';

type Who = 'me' | 'them' | 'system';
type State = 'pending' | 'sent' | 'read' | 'error';
interface Entry {
  id: string;
  who: Who;
  text: string;
  at: number;
  state?: State;
  from?: string;
  read?: boolean;
  error?: string;
  /** A rating request: buttons 1-5 until the visitor used them ('done'). */
  rate?: 'open' | 'done';
  /** A file or image (web/widget/media.ts): shown instead of the text. */
  attachment?: Attachment;
}

/** The child of the sidecar's rating request (docs/behaviour.md, "Satisfaction ratings"). */
const RATING_NS = 'urn:xmpp:consult:rating:0';
/** The child of the notices for a closed shop / a wait that ended (docs/behaviour.md, "Opening hours"). */
const LEFT_NS = 'urn:xmpp:consult:left:0';

const HISTORY_MAX = 200;
const script = document.currentScript as HTMLScriptElement | null;

/** The widget itself: in the page of our own origin, or (framed) inside widget.html on a shop's page. */
function mount(o: WidgetOptions, base: URL, framed: boolean): void {
  const shop = o.shop;
  let locale: Locale = o.locale;
  const title = o.title ?? text(locale, 'title');

  const css = h('link', { rel: 'stylesheet', href: new URL('widget.css', base).href });
  document.head.append(css);

  const root = h('div', { class: framed ? 'cw-root cw-framed' : 'cw-root', 'data-position': o.position });
  for (const [k, v] of Object.entries(o.colours)) root.style.setProperty(k, v);
  const launcher = h('button', { type: 'button', class: 'cw-launcher', 'aria-expanded': 'false', 'aria-controls': 'cw-panel' });
  const launcherLabel = h('span', {}, '客服 Chat');
  const badge = h('span', { class: 'cw-badge', hidden: '' });
  launcher.append(launcherLabel, badge);
  const panel = h('section', { id: 'cw-panel', class: 'cw-panel', role: 'dialog', 'aria-label': title, hidden: '' });
  const header = h('header', { class: 'cw-header', role: 'none' }); // not a second banner of the shop's page
  const heading = h('h2', { class: 'cw-title' }, title);
  const status = h('span', { class: 'cw-status', role: 'status' }, '连接中 Connecting…');
  const close = h('button', { type: 'button', class: 'cw-close', 'aria-label': 'Close chat' }, '×');
  header.append(heading, status, close);
  const banner = h('p', { class: 'cw-banner', role: 'status', hidden: '' }); // the shop is closed: leave a message
  const log = h('ol', { class: 'cw-log', 'aria-live': 'polite', 'aria-label': 'Messages', tabindex: '0' });
  const form = h('form', { class: 'cw-form' });
  const label = h('label', { for: 'cw-input', class: 'cw-sr' }, 'Your message');
  const input = h('textarea', { id: 'cw-input', rows: '2', maxlength: '2000', placeholder: '请输入消息 Type a message' });
  const send = h('button', { type: 'submit', class: 'cw-send' }, '发送 Send');
  form.append(label, input, send);
  const visitor = new VisitorContext(o.product);
  if (o.page) visitor.setPage(o.page); // the shop's page the frame is on (the loader says)
  const prechat = prechatForm(shop, o.prechat, locale, (values) => {
    visitor.setUser(values);
    form.hidden = false;
    input.focus();
  });
  form.hidden = prechat.needed();
  panel.append(header, banner, ...(o.prechat.length ? [prechat.element] : []), log, form);
  // Typing both ways and attachments (web/widget/media.ts); `media` is used from here on.
  const media = widgetMedia({
    form,
    input,
    before: form,
    client: () => xmpp,
    config: () => cfg,
    online: () => online,
    address: () => ({ shop, me, realto: agent || shop }),
    sendAttachment: (body, attachment) => sendText(body, attachment),
    notice: (t) => add({ id: newId(), who: 'system', text: t, at: Date.now(), read: true }),
  });
  root.append(launcher, panel);
  document.body.append(root);

  let cfg: WebConfig | undefined;
  let me = '';
  let agent = ''; // who answered last (realto of the next message, as in the seed)
  let entries: Entry[] = [];
  let xmpp: XmppClient | undefined;
  let online = false;
  const rows = new Map<string, HTMLLIElement>();

  const historyKey = () => `consult.history:${me}:${shop}`;
  const save = () => {
    try {
      localStorage.setItem(historyKey(), JSON.stringify({ agent, entries: entries.slice(-HISTORY_MAX) }));
    } catch {
      /* full or disabled */
    }
  };
  const isOpen = () => !panel.hidden;

  let statusKey: TextKey = 'connecting';
  function setStatus(key: TextKey, ok: boolean): void {
    statusKey = key;
    status.textContent = text(locale, key);
    status.dataset.online = String(ok);
    send.disabled = !ok;
  }
  /** Every label in the widget's locale (setLocale switches at once). */
  function relabel(): void {
    if (framed) document.documentElement.lang = locale === 'en' ? 'en' : 'zh'; // our frame page only, never the shop's
    launcherLabel.textContent = text(locale, 'launcher');
    if (!o.title) {
      heading.textContent = text(locale, 'title');
      panel.setAttribute('aria-label', text(locale, 'title'));
    }
    close.setAttribute('aria-label', text(locale, 'close'));
    label.textContent = text(locale, 'yourMessage');
    input.placeholder = text(locale, banner.hidden ? 'placeholder' : 'placeholderLeave');
    send.textContent = text(locale, 'send');
    log.setAttribute('aria-label', text(locale, 'messages'));
    if (!banner.hidden) banner.textContent = text(locale, 'closed');
    status.textContent = text(locale, statusKey);
    prechat.relabel(locale);
  }
  relabel();

  function tickOf(e: Entry): string {
    return e.state === 'read' ? '✓✓' : e.state === 'sent' ? '✓' : e.state === 'error' ? '!' : '…';
  }
  const tickLabel: Record<State, string> = { pending: 'sending', sent: 'delivered', read: 'read', error: 'not delivered' };

  function render(e: Entry): void {
    let li = rows.get(e.id);
    if (!li) {
      li = h('li', { class: `cw-msg cw-${e.who}`, 'data-id': e.id });
      rows.set(e.id, li);
      log.append(li);
    }
    li.replaceChildren();
    if (e.who === 'them' && e.from) li.append(h('span', { class: 'cw-from' }, e.from));
    li.append(e.attachment ? media.element(e.attachment) : h('span', { class: 'cw-text' }, e.text));
    const meta = h('span', { class: 'cw-meta' }, timeOf(e.at));
    if (e.who === 'me' && e.state) {
      li.dataset.state = e.state;
      meta.append(' ', h('span', { class: 'cw-tick', 'aria-label': tickLabel[e.state], title: tickLabel[e.state] }, tickOf(e)));
    }
    if (e.error) meta.append(' ', h('span', { class: 'cw-error' }, e.error));
    li.append(meta);
    if (e.rate === 'open') li.append(ratingButtons(e));
  }

  /** Five buttons that answer the rating request with the plain digit any client could type. */
  function ratingButtons(e: Entry): HTMLElement {
    const group = h('div', { class: 'cw-rate', role: 'group', 'aria-label': text(locale, 'rate') });
    for (let n = 1; n <= 5; n++) {
      const b = h('button', { type: 'button', class: 'cw-rate-btn', 'aria-label': `${n} / 5` }, String(n));
      b.addEventListener('click', () => {
        if (!sendText(String(n))) return;
        e.rate = 'done';
        render(e);
        save();
      });
      group.append(b);
    }
    return group;
  }

  function add(e: Entry): void {
    if (rows.has(e.id) && e.who !== 'me') return; // offline copy of something already shown
    entries.push(e);
    if (entries.length > HISTORY_MAX) {
      const gone = entries.splice(0, entries.length - HISTORY_MAX);
      for (const g of gone) {
        rows.get(g.id)?.remove();
        rows.delete(g.id);
      }
    }
    render(e);
    log.scrollTop = log.scrollHeight;
    save();
    tell({ who: e.who, text: e.text, at: e.at, ...(e.from ? { from: e.from } : {}) });
    markSeen();
    updateBadge();
  }

  function updateBadge(): void {
    const unread = entries.filter((e) => e.who !== 'me' && !e.read).length;
    badge.hidden = unread === 0 || isOpen();
    badge.textContent = String(unread);
    badge.setAttribute('aria-label', `${unread} ${text(locale, 'unread')}`);
    if (unread !== lastUnread) events?.emit('unread', unread);
    lastUnread = unread;
    link?.send({ cw: 1, type: 'state', open: isOpen(), unread });
  }

  /** Readmarks for what the visitor has now seen (panel open, page visible), through the shop. */
  function markSeen(): void {
    if (!isOpen() || document.visibilityState !== 'visible') return;
    const fresh = entries.filter((e) => e.who !== 'me' && !e.read);
    if (fresh.length === 0) return;
    for (const e of fresh) e.read = true;
    save();
    updateBadge();
    if (online && xmpp) void xmpp.send(readmark({ to: shop, ids: fresh.map((e) => e.id) })).catch(() => undefined);
  }

  function setOpen(open: boolean): void {
    const was = isOpen();
    panel.hidden = !open;
    launcher.setAttribute('aria-expanded', String(open));
    if (open) {
      (form.hidden ? (prechat.element.querySelector('input') ?? input) : input).focus();
      markSeen();
    }
    updateBadge();
    if (was !== open) events?.emit('open', open);
  }
  // The JS API (window.ConsultWidget in our own page, postMessage commands in the frame).
  const control: WidgetControl = {
    open: () => setOpen(true),
    close: () => setOpen(false),
    toggle: () => setOpen(panel.hidden),
    setUser: (u) => visitor.setUser(u),
    setFields: (f) => visitor.setFields(f),
    setProduct: (pid) => {
      visitor.product = pid || undefined;
    },
    setLocale: (l) => {
      locale = l;
      relabel();
      updateBadge();
    },
  };
  let lastUnread = 0;
  const link: FrameLink | undefined = framed ? linkToParent(control) : undefined;
  const events: Emitter | undefined = framed ? undefined : installApi(control);
  const tell = (m: { who: Who; text: string; at: number; from?: string }) => {
    events?.emit('message', m);
    link?.send({ cw: 1, type: 'message', message: m });
  };
  panel.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || ev.isComposing) return;
    ev.preventDefault();
    setOpen(false);
    if (!framed) launcher.focus();
  });
  launcher.addEventListener('click', () => setOpen(panel.hidden));
  close.addEventListener('click', () => {
    setOpen(false);
    launcher.focus();
  });
  document.addEventListener('visibilitychange', markSeen);

  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (sendText(input.value.trim())) input.value = '';
  });

  function sendText(text: string, attachment?: Attachment): boolean {
    if (!text || !online || !xmpp) return false;
    const id = newId();
    add({ id, who: 'me', text, at: Date.now(), state: 'pending', ...(attachment ? { attachment } : {}) });
    media.sent();
    const message = visitorMessage({ shop, me, realto: agent || shop, id, text });
    if (attachment) asAttachment(message, attachment.url, attachment.image);
    void xmpp.send(visitor.decorate(message)).catch((e: Error) => {
      visitor.unsent();
      const entry = entries.find((x) => x.id === id);
      if (entry) {
        entry.state = 'error';
        entry.error = e.message;
        render(entry);
        save();
      }
    });
    return true;
  }

  function onStanza(el: XElement): void {
    if (!el.is('message') || (bare(el.attrs.from) !== shop && el.attrs.type !== 'mstat' && el.attrs.type !== 'error')) return;
    const body = el.getChild('body');
    const type = el.attrs.type;
    if (type === 'mstat') {
      const mine = entries.find((e) => e.id === body?.attrs.id && e.who === 'me');
      if (mine && mine.state === 'pending') {
        mine.state = 'sent';
        render(mine);
        save();
      }
      return;
    }
    if (type === 'error') {
      const mine = entries.find((e) => e.id === body?.attrs.id && e.who === 'me');
      const err = el.getChild('error');
      const text = err?.getChildText('text') ?? err?.children.find((c): c is XElement => typeof c !== 'string')?.name ?? 'error';
      if (mine) {
        mine.state = 'error';
        mine.error = text;
        render(mine);
        save();
      } else add({ id: newId(), who: 'system', text, at: Date.now(), read: true });
      return;
    }
    if (type === 'readmark') {
      const ids = new Set(readmarkIds(el));
      for (const e of entries)
        if (e.who === 'me' && ids.has(e.id) && e.state !== 'error') {
          e.state = 'read';
          render(e);
        }
      save();
      return;
    }
    media.chatState(chatStateOf(el), !!body);
    if (!body) return;
    const text = body.text();
    const at = Number(el.attrs.msec_times) || Date.now();
    const id = body.attrs.id || newId();
    const realfrom = bare(el.attrs.realfrom);
    const left = el.getChild('left', LEFT_NS);
    if (left && left.attrs.reason !== undefined && realfrom === shop) {
      banner.hidden = false; // closed, or the wait ended: what the visitor writes now is a left message
      banner.dataset.reason = left.attrs.reason;
      relabel();
    }
    if (el.getChild('rating', RATING_NS)) {
      add({ id, who: 'system', text, at, rate: 'open' });
    } else if (body.attrs.msgType === '15' || (el.attrs.auto_reply === 'true' && realfrom === shop)) {
      add({ id, who: 'system', text, at });
    } else if (el.attrs.auto_reply === 'true') {
      add({ id, who: 'them', text, at, from: heading.textContent ?? shop }); // the welcome
    } else {
      if (realfrom && realfrom !== agent) {
        agent = realfrom;
      }
      const attachment = attachmentOf(el);
      add({ id, who: 'them', text, at, from: realfrom.split('@')[0] ?? '', ...(attachment ? { attachment } : {}) });
    }
  }

  // ---- identity: a random account on the visitor vhost, kept in localStorage ----------------
  const credKey = () => `consult.visitor:${cfg!.visitorDomain}`;
  const randomName = () => `v${newId().toLowerCase().slice(0, 20)}`;

  function register(entity: XmppClient, username: string, password: string): Promise<void> {
    const id = `reg-${newId()}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        entity.removeListener('element', on);
        reject(new Error('registration timed out'));
      }, 10_000);
      const on = (el: XElement) => {
        if (!el.is('iq') || el.attrs.id !== id) return;
        clearTimeout(timer);
        entity.removeListener('element', on);
        if (el.attrs.type === 'result') resolve();
        else
          reject(
            Object.assign(
              new Error(
                `registration refused: ${el
                  .getChild('error')
                  ?.children.map((c) => (typeof c === 'string' ? c : c.name))
                  .join(' ')}`,
              ),
              { condition: 'register' },
            ),
          );
      };
      entity.on('element', on);
      void entity.send(
        xml(
          'iq',
          { type: 'set', id },
          xml('query', { xmlns: 'jabber:iq:register' }, xml('username', {}, username), xml('password', {}, password)),
        ),
      );
    });
  }

  async function connect(): Promise<void> {
    cfg = await loadConfig(base);
    xmpp = client({
      service: cfg.service,
      domain: cfg.visitorDomain,
      resource: `web-${newId().slice(0, 8).toLowerCase()}`,
      credentials: async (authenticate, mechanisms, _fast, entity) => {
        let creds: { username: string; password: string } | undefined;
        try {
          creds = JSON.parse(localStorage.getItem(credKey()) ?? 'null') ?? undefined;
        } catch {
          /* none */
        }
        if (!creds) {
          creds = { username: randomName(), password: newId() + newId() };
          await register(entity, creds.username, creds.password);
          localStorage.setItem(credKey(), JSON.stringify(creds));
        }
        await authenticate(creds, mechanisms.includes('PLAIN') ? 'PLAIN' : mechanisms[0]!);
      },
    });
    xmpp.on('stanza', onStanza);
    xmpp.on('status', (s: string) => {
      online = s === 'online';
      if (!online) setStatus(s === 'offline' || s === 'disconnect' ? 'reconnecting' : 'connecting', false);
    });
    xmpp.on('error', (e) => {
      // The stored account is gone (deleted on the server): forget it, the next attempt registers anew.
      if (e.condition === 'not-authorized') localStorage.removeItem(credKey());
    });
    xmpp.on('online', async (jid) => {
      const now = bare(jid.toString());
      if (now !== me) {
        me = now;
        try {
          const kept = JSON.parse(localStorage.getItem(historyKey()) ?? 'null') as { agent?: string; entries?: Entry[] } | null;
          agent = kept?.agent ?? '';
          entries = [];
          rows.clear();
          log.replaceChildren();
          for (const e of kept?.entries ?? []) {
            entries.push(e);
            render(e);
          }
        } catch {
          /* fresh */
        }
        root.dataset.jid = me;
      }
      online = true;
      setStatus('online', true);
      await xmpp!.send(xml('presence'));
      markSeen();
    });
    for (let attempt = 0; ; attempt++) {
      try {
        await xmpp.start();
        return;
      } catch (e) {
        if ((e as { condition?: string }).condition === 'not-authorized' && attempt === 0) continue; // registers a new account
        setStatus('offline', false);
        await new Promise((r) => setTimeout(r, Math.min(30_000, 1000 * 2 ** attempt)));
      }
    }
  }

  if (o.open && !framed) setOpen(true); // framed: the loader opens it
  void connect();
}

/**
 * Where the widget runs. Inside our frame page (widget.html): the widget, options from the query string. On a
 * page of another origin (a shop's): the loader, the widget in an iframe of ours, so the page's scripts cannot
 * reach the visitor's credentials. On a page of our own origin a frame would isolate nothing: in the page.
 */
function start(script: HTMLScriptElement): void {
  const base = new URL('.', script.src);
  if (script.dataset.framePage === 'true') {
    const query = new URLSearchParams(location.search);
    const framed = readOptions((k) => query.get(k));
    mount(framed, base, true);
    return;
  }
  const o = readOptions((k) => script.dataset[k]);
  if (base.origin !== location.origin || script.dataset.frame === 'true') mountLoader(o, base);
  else mount(o, base, false);
}

if (script) start(script);
else console.error('consult widget: load it with a plain <script src=…/widget.js data-shop=…> tag');
