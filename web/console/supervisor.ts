// The supervisor panel of the console. On sign-in the console asks each shop `/live`
// (src/routing/supervisor.ts); a shop whose supervisor this account is answers with a notice carrying
// <live xmlns='urn:xmpp:consult:supervisor:0'>, anyone else gets `forbidden`, which this module swallows:
// the panel only appears for a shop that answered. It lists the shop's open sessions and its queue
// (Refresh re-asks), and per session: monitor on / off (the copies arrive marked <monitored/> and are shown
// here, not as conversations), take over (the session then comes to the console's tabs as a transfer
// does), and a whisper box (a notice to the session's agent only; the visitor receives nothing).
// Everything arrives in band; text is always written with textContent.
import { xml, type XElement, type XmppClient } from '@xmpp/client';
import { bare, h, newId, timeOf } from '../shared/consult.js';

export const NS_SUPERVISOR = 'urn:xmpp:consult:supervisor:0';

interface LiveSession {
  visitor: string;
  agent: string;
  since: number;
  monitored: boolean;
}
interface Live {
  sessions: LiveSession[];
  waiting: { visitor: string; since: number; group: string }[];
}

let xmpp: XmppClient | undefined;
/** The commands this module sent, by body id: their acks refresh the list, their errors are shown here. */
const mine = new Map<string, { shop: string; probe: boolean; text: string }>();
const lives = new Map<string, Live>();
let panel: HTMLElement | undefined;

/** Called once the console is online: probes every shop with `/live`. */
export function startSupervisor(client: XmppClient, shops: string[]): void {
  xmpp = client;
  for (const shop of shops) command(shop, '/live', true);
}

function command(shop: string, text: string, probe = false): void {
  if (!xmpp) return;
  const id = newId();
  mine.set(id, { shop, probe, text });
  void xmpp.send(xml('message', { to: shop, type: 'chat' }, xml('body', { id }, text))).catch(() => undefined);
}

/** The console's hook: true when the stanza was for the supervisor panel (the console then ignores it). */
export function supervisorStanza(el: XElement): boolean {
  if (!el.is('message')) return false;
  const type = el.attrs.type ?? 'normal';
  const id = el.getChild('body')?.attrs.id;
  const sent = id ? mine.get(id) : undefined;
  if (type === 'mstat' && sent) {
    mine.delete(id!);
    if (!sent.probe) {
      status(`${sent.text}: done`);
      command(sent.shop, '/live', true); // the list as it is now (monitored, taken over)
    }
    return true;
  }
  if (type === 'error' && sent) {
    mine.delete(id!);
    // A refused probe: this account is not a supervisor of that shop; nothing to show.
    if (!sent.probe) status(`${sent.text}: ${el.getChild('error')?.getChildText('text') ?? 'refused'}`);
    return true;
  }
  const live = el.getChild('live', NS_SUPERVISOR);
  if (live) {
    lives.set(bare(el.attrs.from), parseLive(live));
    render();
    return true;
  }
  const monitored = el.getChild('monitored', NS_SUPERVISOR);
  if (monitored) {
    // Copies without a body (chat states, readmarks) say nothing a supervisor reads.
    if (el.attrs.type === 'readmark' || !el.getChild('body')?.text()) return true;
    copy(bare(el.attrs.from), monitored, el.getChildText('body') ?? '', Number(el.attrs.msec_times) || Date.now());
    return true;
  }
  // The shop's readable answers to /monitor, /whisper… stay with the console's notices.
  return false;
}

/** For an agent: the visitor a supervisor's whisper is about (the console shows it in that conversation). */
export function whisperAbout(el: XElement): string | undefined {
  const w = el.getChild('whisper', NS_SUPERVISOR);
  return w?.attrs.visitor ? bare(w.attrs.visitor) : undefined;
}

function parseLive(live: XElement): Live {
  return {
    sessions: live.getChildren('session').map((s) => ({
      visitor: bare(s.attrs.visitor),
      agent: bare(s.attrs.agent),
      since: Number(s.attrs.since) || 0,
      monitored: s.attrs.monitored === 'true',
    })),
    waiting: live.getChildren('waiting').map((w) => ({
      visitor: bare(w.attrs.visitor),
      since: Number(w.attrs.since) || 0,
      group: w.attrs.group ?? '',
    })),
  };
}

/** The panel, made on the first `/live` answer, after the conversations. */
function ensurePanel(): HTMLElement {
  if (panel) return panel;
  panel = h('section', { id: 'supervisor', class: 'supervisor', 'aria-labelledby': 'supervisor-title' });
  const head = h('div', { class: 'sup-head' });
  head.append(h('h2', { id: 'supervisor-title' }, 'Supervisor'));
  const refresh = h('button', { type: 'button', id: 'sup-refresh' }, 'Refresh');
  refresh.addEventListener('click', () => {
    for (const shop of lives.keys()) command(shop, '/live', true);
  });
  head.append(refresh);
  panel.append(head, h('div', { id: 'sup-shops' }));

  const form = h('form', { id: 'sup-whisper', class: 'sup-whisper' });
  form.append(
    h('label', { for: 'sup-whisper-to' }, 'Whisper to the agent of'),
    h('select', { id: 'sup-whisper-to' }),
    h('label', { for: 'sup-whisper-text', class: 'sr' }, 'Whisper'),
    h('input', { id: 'sup-whisper-text', placeholder: 'Only the agent sees this', autocomplete: 'off' }),
    h('button', { type: 'submit' }, 'Whisper'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = (form.querySelector('#sup-whisper-to') as HTMLSelectElement).value;
    const input = form.querySelector('#sup-whisper-text') as HTMLInputElement;
    const text = input.value.trim();
    if (!to || !text) return;
    const [shop, visitor] = to.split('|') as [string, string];
    input.value = '';
    command(shop, `/whisper ${visitor} ${text}`);
  });
  panel.append(form);
  panel.append(h('p', { id: 'sup-status', class: 'sup-status', role: 'status' }));
  panel.append(h('h3', { id: 'sup-copies-title' }, 'Monitored messages'));
  panel.append(h('ol', { id: 'sup-copies', class: 'sup-copies', 'aria-live': 'polite', 'aria-labelledby': 'sup-copies-title' }));
  (document.querySelector('#app') ?? document.body).append(panel);
  return panel;
}

function render(): void {
  const p = ensurePanel();
  const shops = p.querySelector('#sup-shops') as HTMLElement;
  const select = p.querySelector('#sup-whisper-to') as HTMLSelectElement;
  const chosen = select.value;
  shops.replaceChildren();
  select.replaceChildren();
  for (const [shop, live] of lives) {
    const box = h('div', { class: 'sup-shop' });
    box.append(h('h3', {}, `${shop} · ${live.sessions.length} open · ${live.waiting.length} waiting`));
    const table = h('table', { class: 'sup-sessions' });
    table.append(h('caption', { class: 'sr' }, `Open sessions of ${shop}`));
    const head = h('tr');
    for (const c of ['Visitor', 'Agent', 'Since', 'Actions']) head.append(h('th', { scope: 'col' }, c));
    table.append(h('thead'), h('tbody'));
    table.tHead!.append(head);
    for (const s of live.sessions) {
      const tr = h('tr', { 'data-visitor': s.visitor });
      tr.append(h('td', {}, s.visitor), h('td', {}, s.agent), h('td', {}, timeOf(s.since)));
      const actions = h('td', { class: 'sup-actions' });
      const name = s.visitor.split('@')[0]!;
      // A toggle: its name stays "Monitor <visitor>", aria-pressed (and a tick, in CSS) says whether it is on.
      const mon = h(
        'button',
        { type: 'button', class: 'sup-monitor', 'aria-pressed': String(s.monitored), 'aria-label': `Monitor ${name}` },
        'Monitor',
      );
      mon.addEventListener('click', () => command(shop, `/${s.monitored ? 'unmonitor' : 'monitor'} ${s.visitor}`));
      const take = h('button', { type: 'button', class: 'sup-take', 'aria-label': `Take over ${name}` }, 'Take over');
      take.addEventListener('click', () => command(shop, `/takeover ${s.visitor}`));
      actions.append(mon, ' ', take);
      tr.append(actions);
      table.tBodies[0]!.append(tr);
      const value = `${shop}|${s.visitor}`;
      select.append(h('option', { value }, `${name} (${s.agent.split('@')[0]})`));
    }
    if (!live.sessions.length) box.append(h('p', {}, 'No open session.'));
    else box.append(table);
    box.append(h('h4', {}, 'Queue'));
    const q = h('ol', { class: 'sup-queue', 'aria-label': `Queue of ${shop}` });
    for (const w of live.waiting)
      q.append(h('li', { 'data-visitor': w.visitor }, `${w.visitor} · since ${timeOf(w.since)}${w.group ? ` · ${w.group}` : ''}`));
    if (!live.waiting.length) q.append(h('li', {}, 'Nobody is waiting.'));
    box.append(q);
    shops.append(box);
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function status(text: string): void {
  if (panel) (panel.querySelector('#sup-status') as HTMLElement).textContent = `${timeOf(Date.now())} ${text}`;
}

function copy(shop: string, m: XElement, text: string, at: number): void {
  const list = ensurePanel().querySelector('#sup-copies') as HTMLOListElement;
  const li = h('li', { class: `sup-copy ${m.attrs.from ?? ''}`, 'data-visitor': bare(m.attrs.visitor) });
  li.append(h('span', { class: 'meta' }, `${timeOf(at)} ${shop.split('@')[0]}`), h('span', { class: 'text' }, text));
  list.append(li);
  while (list.children.length > 200) list.firstElementChild!.remove();
}
