// The agent console: an agent signs in with its own XMPP account over WebSocket and serves its
// visitors. One tab per (shop, visitor) with unread count and history; replies always carry realto;
// transfer, close and status are the in-band commands of src/routing/commands.ts, sent to the shop
// with realto. On sign-in (and after each command) it asks every shop `/sessions` (answered by
// src/routing/agent-info.ts with a structured child) to list the sessions it holds and the queue.
// Message text is always written with textContent.
import { client, xml, type XElement, type XmppClient } from '@xmpp/client';
import {
  NS_AGENT_INFO,
  agentMessage,
  bare,
  h,
  loadConfig,
  newId,
  readmark,
  readmarkIds,
  timeOf,
  type WebConfig,
} from '../shared/consult.js';
import { startSupervisor, supervisorStanza, whisperAbout } from './supervisor.js';
import './features.js'; // notifications, visitor panel, canned picker, tags and notes, archive, keys
import { hooks, type RestoredEntry } from './hooks.js';
import { type Attachment, consoleMedia } from './media.js';
import { asAttachment, attachmentOf } from '../shared/upload.js';

type Who = 'me' | 'visitor' | 'system' | 'other';
interface Entry {
  id: string;
  who: Who;
  text: string;
  at: number;
  state?: 'pending' | 'sent' | 'read' | 'error';
  error?: string;
  from?: string;
  /** A file or image (web/console/media.ts): shown instead of the text. */
  attachment?: Attachment;
}
interface Conversation {
  key: string;
  shop: string;
  visitor: string;
  entries: Entry[];
  unread: number;
  closed: boolean;
  seen: Set<string>;
}

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const loginForm = $<HTMLFormElement>('#login');
const loginError = $<HTMLParagraphElement>('#login-error');
const app = $<HTMLDivElement>('#app');
const whoami = $<HTMLSpanElement>('#whoami');
const connStatus = $<HTMLSpanElement>('#conn');
const tabs = $<HTMLDivElement>('#tabs');
const empty = $<HTMLParagraphElement>('#empty');
const chat = $<HTMLElement>('#chat');
const chatTitle = $<HTMLHeadingElement>('#chat-title');
const log = $<HTMLOListElement>('#log');
const replyForm = $<HTMLFormElement>('#reply');
const replyInput = $<HTMLTextAreaElement>('#reply-text');
const transferForm = $<HTMLFormElement>('#transfer');
const transferTo = $<HTMLInputElement>('#transfer-to');
const closeBtn = $<HTMLButtonElement>('#close-session');
const statusSel = $<HTMLSelectElement>('#status');
const notices = $<HTMLOListElement>('#notices');
const queueInfo = $<HTMLSpanElement>('#queue');

let cfg: WebConfig;
let xmpp: XmppClient | undefined;
let me = '';
let active: string | undefined;
const convs = new Map<string, Conversation>();
const pendingCommands = new Map<string, { conv: Conversation; kind: 'close' | 'transfer' | 'reply' }>();
const queues = new Map<string, number>();

const keyOf = (shop: string, visitor: string) => `${shop}|${visitor}`;

function conv(shop: string, visitor: string): Conversation {
  const key = keyOf(shop, visitor);
  let c = convs.get(key);
  if (!c) {
    c = { key, shop, visitor, entries: [], unread: 0, closed: false, seen: new Set() };
    convs.set(key, c);
    if (!active) active = key;
  }
  return c;
}

function notice(text: string): void {
  notices.append(h('li', {}, `${timeOf(Date.now())} ${text}`));
  while (notices.children.length > 20) notices.firstElementChild!.remove();
}

function renderTabs(): void {
  tabs.replaceChildren();
  const byShop = new Map<string, Conversation[]>();
  for (const c of convs.values()) byShop.set(c.shop, [...(byShop.get(c.shop) ?? []), c]);
  for (const [shop, list] of byShop) {
    const group = h('div', { class: 'shop' });
    const q = queues.get(shop);
    group.append(h('h3', {}, `${shop}${q !== undefined ? ` · ${q} waiting` : ''}`));
    const tl = h('div', { role: 'tablist', 'aria-label': `Visitors of ${shop}` });
    for (const c of list) {
      const selected = c.key === active;
      const b = h('button', {
        type: 'button',
        role: 'tab',
        class: `tab${c.closed ? ' closed' : ''}`,
        'aria-selected': String(selected),
        'aria-controls': 'chat',
        'data-visitor': c.visitor,
        id: `tab-${tabIndex(c)}`,
      });
      b.append(h('span', { class: 'tab-name' }, c.visitor.split('@')[0]!));
      if (c.closed) b.append(h('span', { class: 'tab-state' }, 'closed'));
      if (c.unread > 0) b.append(h('span', { class: 'unread', 'aria-label': `${c.unread} unread` }, String(c.unread)));
      b.addEventListener('click', () => {
        active = c.key;
        show();
      });
      tl.append(b);
    }
    group.append(tl);
    tabs.append(group);
  }
  let total = 0;
  for (const c of convs.values()) total += c.unread;
  document.title = `${total ? `(${total}) ` : ''}Agent console`;
}
const tabIds = new Map<string, number>();
const tabIndex = (c: Conversation) => {
  if (!tabIds.has(c.key)) tabIds.set(c.key, tabIds.size + 1);
  return tabIds.get(c.key)!;
};

function renderEntry(e: Entry): HTMLLIElement {
  const li = h('li', { class: `msg ${e.who}`, 'data-id': e.id });
  if (e.from) li.append(h('span', { class: 'from' }, e.from));
  li.append(e.attachment ? media.element(e.attachment) : h('span', { class: 'text' }, e.text));
  const meta = h('span', { class: 'meta' }, timeOf(e.at));
  if (e.state) {
    li.dataset.state = e.state;
    const label = { pending: 'sending', sent: 'delivered', read: 'read', error: 'not delivered' }[e.state];
    meta.append(
      ' ',
      h(
        'span',
        { class: 'tick', 'aria-label': label, title: label },
        e.state === 'read' ? '✓✓' : e.state === 'sent' ? '✓' : e.state === 'error' ? '!' : '…',
      ),
    );
  }
  if (e.error) meta.append(' ', h('span', { class: 'error' }, e.error));
  li.append(meta);
  return li;
}

function show(): void {
  const c = active ? convs.get(active) : undefined;
  chat.hidden = !c;
  empty.hidden = !!c;
  if (c) {
    chatTitle.textContent = `${c.visitor} · ${c.shop}${c.closed ? ' (closed)' : ''}`;
    chat.setAttribute('aria-labelledby', `tab-${tabIndex(c)}`);
    log.replaceChildren(...c.entries.map(renderEntry));
    log.scrollTop = log.scrollHeight;
    for (const el of [replyInput, transferTo, closeBtn] as HTMLElement[]) (el as HTMLInputElement).disabled = c.closed;
    (replyForm.querySelector('button') as HTMLButtonElement).disabled = c.closed;
    (transferForm.querySelector('button') as HTMLButtonElement).disabled = c.closed;
    markSeen(c);
  }
  renderTabs();
  hooks.shown(c && { shop: c.shop, visitor: c.visitor });
}

/** Readmarks for the visitor's messages the agent now sees, through the shop with realto. */
function markSeen(c: Conversation): void {
  if (c.key !== active || document.visibilityState !== 'visible') return;
  const fresh = c.entries.filter((e) => e.who === 'visitor' && !c.seen.has(e.id));
  c.unread = 0;
  if (!fresh.length || c.closed || !xmpp) return;
  for (const e of fresh) c.seen.add(e.id);
  void xmpp.send(readmark({ to: c.shop, realto: c.visitor, ids: fresh.map((e) => e.id) })).catch(() => undefined);
}
document.addEventListener('visibilitychange', () => {
  const c = active && convs.get(active);
  if (c) {
    markSeen(c);
    renderTabs();
  }
});

function push(c: Conversation, e: Entry): void {
  if (c.entries.some((x) => x.id === e.id)) return;
  c.entries.push(e);
  if (c.entries.length > 500) c.entries.shift();
  if (e.who === 'visitor' || e.who === 'system') {
    if (c.key === active && document.visibilityState === 'visible') markSeen(c);
    else {
      c.unread++;
      if (e.who === 'visitor') hooks.incoming(c.shop, c.visitor, e.text); // sound, desktop notification
    }
  }
  if (c.key === active) show();
  else renderTabs();
}

function findMine(id: string | undefined): [Conversation, Entry] | undefined {
  if (!id) return undefined;
  for (const c of convs.values()) {
    const e = c.entries.find((x) => x.id === id && x.who === 'me');
    if (e) return [c, e];
  }
  return undefined;
}

function onStanza(el: XElement): void {
  if (!el.is('message')) return;
  if (supervisorStanza(el)) return; // /live answers, monitor copies (web/console/supervisor.ts)
  if (hooks.stanza(el)) return; // history answers, the canned list, archive results (web/console/features.ts)
  const type = el.attrs.type ?? 'normal';
  const body = el.getChild('body');
  const id = body?.attrs.id;
  if (type === 'mstat') {
    const cmd = id ? pendingCommands.get(id) : undefined;
    if (cmd) {
      pendingCommands.delete(id!);
      if (cmd.kind !== 'reply') {
        cmd.conv.closed = true;
        show();
        void refresh();
      }
    }
    const hit = findMine(id);
    if (hit && hit[1].state === 'pending') {
      hit[1].state = 'sent';
      if (hit[0].key === active) show();
    }
    return;
  }
  if (type === 'error') {
    const err = el.getChild('error');
    const text = err?.getChildText('text') ?? 'error';
    if (id) pendingCommands.delete(id);
    const hit = findMine(id);
    if (hit) {
      hit[1].state = 'error';
      hit[1].error = text;
      if (hit[0].key === active) show();
    } else notice(text);
    return;
  }
  const info = el.getChild('info', NS_AGENT_INFO);
  if (info) {
    applyInfo(bare(el.attrs.from), info);
    return;
  }
  const realfrom = bare(el.attrs.realfrom);
  const realto = bare(el.attrs.realto);
  const shop = bare(el.attrs.from);
  if (!realfrom) return; // not consult traffic
  // qchatid 4: to an agent, realfrom is the visitor; 5 (an earlier agent's reply, replayed on a transfer): realto is.
  // A supervisor's whisper (realfrom the supervisor) belongs to the conversation it is about.
  const visitor = whisperAbout(el) ?? (el.attrs.qchatid === '5' && realto ? realto : realfrom);
  if (type === 'readmark') {
    const c = convs.get(keyOf(shop, visitor));
    const ids = new Set(readmarkIds(el));
    for (const e of c?.entries ?? []) if (e.who === 'me' && ids.has(e.id)) e.state = 'read';
    if (c?.key === active) show();
    return;
  }
  if (!body) return;
  const text = body.text();
  const at = Number(el.attrs.msec_times) || Date.now();
  if (visitor === shop) {
    notice(text);
    return;
  } // e.g. the answer to /status
  const c = conv(shop, visitor);
  const delayed = !!el.getChild('delay', 'urn:xmpp:delay');
  if (body.attrs.msgType === '15') {
    push(c, { id: id || newId(), who: 'system', text, at });
    void refresh();
  } else if (realfrom !== visitor) {
    push(c, { id: id || newId(), who: 'other', text, at, from: realfrom.split('@')[0] }); // an earlier agent's reply, replayed
  } else {
    if (c.closed && !delayed) c.closed = false; // the visitor came back: a new session
    const attachment = attachmentOf(el);
    push(c, { id: id || newId(), who: 'visitor', text, at, ...(attachment ? { attachment } : {}) });
  }
}

/** The answer to `/sessions`: the sessions this agent holds in that shop, and the queue. */
function applyInfo(shop: string, info: XElement): void {
  const open = new Set(info.getChildren('session').map((s) => bare(s.attrs.visitor)));
  queues.set(shop, Number(info.attrs.queue ?? 0));
  for (const v of open) conv(shop, v).closed = false;
  for (const c of convs.values()) if (c.shop === shop && !open.has(c.visitor)) c.closed = true;
  queueInfo.textContent = [...queues].map(([s, n]) => `${s.split('@')[0]}: ${n} waiting`).join(' · ');
  show();
}

async function refresh(): Promise<void> {
  if (!xmpp) return;
  for (const shop of cfg.shops ?? []) {
    await xmpp.send(xml('message', { to: shop, type: 'chat' }, xml('body', { id: newId() }, '/sessions'))).catch(() => undefined);
  }
}

/** Older lines (the archive, the agent's own notes): merged by id, in time order, never unread. */
function restore(shop: string, visitor: string, entries: RestoredEntry[]): void {
  const c = conv(shop, visitor);
  for (const e of entries) {
    if (c.entries.some((x) => x.id === e.id)) continue;
    c.entries.push(e.who === 'me' ? { ...e, state: 'sent' } : { ...e });
    if (e.who === 'visitor') c.seen.add(e.id);
  }
  c.entries.sort((a, b) => a.at - b.at);
  if (c.key === active) show();
  else renderTabs();
}
hooks.lend({
  xmpp: () => xmpp,
  me: () => me,
  shops: () => cfg?.shops ?? [],
  active: () => {
    const c = active ? convs.get(active) : undefined;
    return c && { shop: c.shop, visitor: c.visitor, closed: c.closed };
  },
  restore,
  notice,
  note: (shop, visitor, text) => restore(shop, visitor, [{ id: newId(), who: 'system', text, at: Date.now() }]),
});

function sendCommand(c: Conversation, text: string, kind: 'close' | 'transfer'): void {
  if (!xmpp) return;
  const id = newId();
  pendingCommands.set(id, { conv: c, kind });
  void xmpp.send(agentMessage({ shop: c.shop, visitor: c.visitor, id, text }));
  push(c, { id, who: 'system', text: `${text}`, at: Date.now() });
}

/** A reply to the conversation shown (a file's when `attachment` is given). */
function reply(text: string, attachment?: Attachment): boolean {
  const c = active ? convs.get(active) : undefined;
  if (!c || !text || !xmpp) return false;
  const id = newId();
  push(c, { id, who: 'me', text, at: Date.now(), state: 'pending', ...(attachment ? { attachment } : {}) });
  media.sent();
  const message = agentMessage({ shop: c.shop, visitor: c.visitor, id, text });
  void xmpp.send(attachment ? asAttachment(message, attachment.url, attachment.image) : message);
  return true;
}
// Typing both ways and attachments (web/console/media.ts).
const media = consoleMedia({ log, replyForm, replyInput, sendAttachment: (text, attachment) => void reply(text, attachment) });
replyForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (reply(replyInput.value.trim())) replyInput.value = '';
});
replyInput.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    replyForm.requestSubmit();
  }
});
transferForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const c = active ? convs.get(active) : undefined;
  const to = transferTo.value.trim();
  if (!c || !to) return;
  transferTo.value = '';
  sendCommand(c, `/transfer ${to}`, 'transfer');
});
closeBtn.addEventListener('click', () => {
  const c = active ? convs.get(active) : undefined;
  if (c) sendCommand(c, '/close', 'close');
});
statusSel.addEventListener('change', () => {
  if (!xmpp) return;
  for (const shop of cfg.shops ?? []) {
    void xmpp.send(xml('message', { to: shop, type: 'chat', realto: shop }, xml('body', { id: newId() }, `/status ${statusSel.value}`)));
  }
});

loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const data = new FormData(loginForm);
  const username = String(data.get('username') ?? '').trim();
  const password = String(data.get('password') ?? '');
  loginError.textContent = '';
  (loginForm.querySelector('button') as HTMLButtonElement).disabled = true;
  try {
    cfg = await loadConfig(new URL('.', location.href));
    const x = client({
      service: cfg.service,
      domain: cfg.domain,
      resource: `console-${newId().slice(0, 6).toLowerCase()}`,
      credentials: (authenticate, mechanisms) =>
        authenticate({ username, password }, mechanisms.includes('PLAIN') ? 'PLAIN' : mechanisms[0]!),
    });
    x.on('stanza', onStanza);
    x.on('error', () => undefined);
    x.on('status', (s: string) => {
      connStatus.textContent = s === 'online' ? 'online' : `${s}…`;
      connStatus.dataset.online = String(s === 'online');
    });
    x.on('online', async (jid) => {
      me = bare(jid.toString());
      await x.send(xml('presence'));
      await hooks.online(x); // the archive first: /sessions then marks what is closed
      await refresh();
      startSupervisor(x, cfg.shops ?? []);
    });
    await x.start();
    xmpp = x;
    whoami.textContent = me;
    loginForm.hidden = true;
    app.hidden = false;
    show();
  } catch (e) {
    loginError.textContent = `Sign-in failed: ${(e as Error).message}`;
  } finally {
    (loginForm.querySelector('button') as HTMLButtonElement).disabled = false;
  }
});
