// Thin @xmpp/client 0.14 wrapper for e2e tests: records every stanza received
// and lets a test wait for one. What the library does by default (checked in
// node_modules/@xmpp/client 0.14 and against ejabberd 23.01):
//  - SASL: over a non-TLS socket it picks the first offered mechanism that is
//    not PLAIN: SCRAM-SHA-1 with ejabberd's defaults, whose pure-JS PBKDF2
//    costs ~0.6 s of CPU per login. We force PLAIN (loopback only, tests only)
//    unless `sasl: 'default'` is given.
//  - Stream management (XEP-0198) is enabled with resume; <r/>/<a/> are nonzas
//    and never show up in `received`.
//  - No initial presence is sent: we send <presence/> so the server routes
//    bare-JID messages to this resource.
//  - Reconnect is on by default: we stop it so a dropped stream fails the test.
import { client, type Authenticate, type XmppClient } from '@xmpp/client';
import parse from '@xmpp/xml/lib/parse.js';
import type { Element } from 'ltx';

export type { Element };

// Matchers for waitFor: the consult stanzas the tests look for.
/** A stanza whose body has this id. */
export const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
/** The server's mstat ack of that body id. */
export const isAck = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
/** That message, bounced back with an error. */
export const isBounce = (id: string) => (el: Element) => el.attrs.type === 'error' && bodyId(id)(el);
/** A notice from the shop (QChat's msgType 15). */
export const isNotice = (el: Element) => el.is('message') && el.getChild('body')?.attrs.msgType === '15';

export interface ConnectOptions {
  service: string;
  domain: string;
  username: string;
  password: string;
  resource?: string;
  /** 'PLAIN' (default, fast) or 'default' (library choice: SCRAM-SHA-1 without TLS). */
  sasl?: 'PLAIN' | 'default';
  /** Skip the initial <presence/> (default false). */
  noPresence?: boolean;
}

export interface TestClient {
  /** Full JID after resource binding, e.g. `alice@localhost/test`. */
  jid: string;
  /** Bare JID, e.g. `alice@localhost`. */
  bareJid: string;
  xmpp: XmppClient;
  /** Send a raw stanza string (parsed, attributes and children kept verbatim). */
  send(stanza: string | Element): Promise<void>;
  /** Every stanza received, in order. */
  received: Element[];
  /** First stanza (past or future) matching `pred` not yet returned by an earlier waitFor. */
  waitFor(pred: (el: Element) => boolean, timeoutMs?: number): Promise<Element>;
  /**
   * Resolves once every stanza the server had queued for this session before the call has been received:
   * a ping to the server, which this session's c2s process answers after what is already in its mailbox.
   * Checks that something was NOT delivered are made after it (the positive outcome shows the duplicate
   * would have been routed by then).
   */
  settle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

let markers = 0;

/**
 * A bodyless chat message from `from` to `to`'s full JID, waited for at `to`: the server keeps the order of
 * stanzas between two sessions, so whatever `from`'s session had routed to `to` before has arrived by then.
 * Bodyless, so neither mod_block_strangers nor mod_consult (not addressed to a shop) hold it back.
 */
export async function marker(from: TestClient, to: TestClient, timeoutMs = 10_000): Promise<void> {
  const id = `marker-${++markers}`;
  await from.send(`<message to='${to.jid}' type='chat' id='${id}'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`);
  await to.waitFor((el) => el.is('message') && el.attrs.id === id, timeoutMs);
}

function short(el: Element): string {
  const s = el.toString();
  return s.length > 1000 ? `${s.slice(0, 1000)}...` : s;
}

export async function connectClient(opts: ConnectOptions): Promise<TestClient> {
  const xmpp = client({
    service: opts.service,
    domain: opts.domain,
    username: opts.username,
    password: opts.password,
    ...(opts.sasl !== 'default' && {
      credentials: (authenticate: Authenticate, mechanisms: string[]) => {
        if (!mechanisms.includes('PLAIN')) throw new Error(`server offers no PLAIN: ${mechanisms.join(' ')}`);
        return authenticate({ username: opts.username, password: opts.password }, 'PLAIN');
      },
    }),
    resource: opts.resource ?? 'test',
    timeout: 5000,
  });
  xmpp.reconnect.stop();

  const received: Element[] = [];
  const consumed = new Set<Element>();
  type Waiter = { pred: (el: Element) => boolean; resolve: (el: Element) => void };
  let waiters: Waiter[] = [];

  xmpp.on('stanza', (el: Element) => {
    received.push(el);
    const w = waiters.find((x) => x.pred(el));
    if (w) {
      consumed.add(el);
      waiters = waiters.filter((x) => x !== w);
      w.resolve(el);
    }
  });
  // Errors (stream errors, socket resets) must not crash the test process;
  // they surface as timeouts / failed sends with the log of what arrived.
  const errors: Error[] = [];
  xmpp.on('error', (e: Error) => {
    errors.push(e);
  });

  const startTimeout = new Promise<never>((_, reject) => {
    const t = setTimeout(() => reject(new Error(`XMPP connect to ${opts.service} as ${opts.username} timed out`)), 10_000);
    t.unref();
  });
  try {
    await Promise.race([xmpp.start(), startTimeout]);
  } catch (e) {
    await xmpp.stop().catch(() => undefined);
    throw e;
  }

  if (!opts.noPresence) {
    await xmpp.send(parse('<presence/>'));
    // c2s handles a stream's stanzas in order: once this ping is answered the
    // presence has been processed and the session is available for routing.
    await xmpp.iqCaller.request(parse(`<iq type='get' to='${opts.domain}'><ping xmlns='urn:xmpp:ping'/></iq>`), 5000);
  }

  const jid = xmpp.jid!.toString();
  const ping = (timeoutMs: number) =>
    xmpp.iqCaller.request(parse(`<iq type='get' to='${opts.domain}'><ping xmlns='urn:xmpp:ping'/></iq>`), timeoutMs);

  return {
    jid,
    bareJid: jid.split('/')[0]!,
    xmpp,
    received,
    async send(stanza) {
      await xmpp.send(typeof stanza === 'string' ? parse(stanza) : stanza);
    },
    waitFor(pred, timeoutMs = 5000) {
      const already = received.find((el) => !consumed.has(el) && pred(el));
      if (already) {
        consumed.add(already);
        return Promise.resolve(already);
      }
      return new Promise<Element>((resolve, reject) => {
        const w: Waiter = {
          pred,
          resolve: (el) => {
            clearTimeout(timer);
            resolve(el);
          },
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          const got = received.map((el, i) => `  #${i}${consumed.has(el) ? ' (consumed)' : ''} ${short(el)}`).join('\n');
          const errs = errors.length ? `\nerrors: ${errors.map((e) => e.message).join('; ')}` : '';
          reject(new Error(`${jid}: no matching stanza within ${timeoutMs} ms; received ${received.length}:\n${got || '  (none)'}${errs}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    async settle(timeoutMs = 10_000) {
      await ping(timeoutMs);
    },
    async stop() {
      xmpp.reconnect.stop();
      // Bounded: a half-dead socket must not hang the test's teardown.
      await Promise.race([xmpp.stop().catch(() => undefined), new Promise((r) => setTimeout(r, 3000).unref())]);
    },
  };
}
