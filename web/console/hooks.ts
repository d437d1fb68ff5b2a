// The console's extension points: console.ts owns the conversations and calls these hooks; the agent's
// day-to-day features (notifications, visitor panel, canned picker, tags and notes, MAM history, keyboard)
// live in their own modules and register here, so console.ts only carries small calls.
import type { XElement, XmppClient } from '@xmpp/client';

/** A line restored from the archive (XEP-0313), as the console keeps it. */
export interface RestoredEntry {
  id: string;
  who: 'me' | 'visitor' | 'system' | 'other';
  text: string;
  at: number;
  from?: string;
}

/** What console.ts lends the feature modules. */
export interface ConsoleApi {
  xmpp(): XmppClient | undefined;
  me(): string;
  shops(): string[];
  /** The conversation shown now. */
  active(): { shop: string; visitor: string; closed: boolean } | undefined;
  /** Older lines of a conversation (creating it), merged by id and in time order, not counted as unread. */
  restore(shop: string, visitor: string, entries: RestoredEntry[]): void;
  /** A line in the notices list. */
  notice(text: string): void;
  /** A line in the conversation (not sent). */
  note(shop: string, visitor: string, text: string): void;
}

type StanzaHook = (el: XElement) => boolean;
type IncomingHook = (shop: string, visitor: string, text: string) => void;
type ShownHook = (c: { shop: string; visitor: string } | undefined) => void;
type OnlineHook = () => Promise<void>;

const stanzaHooks: StanzaHook[] = [];
const incomingHooks: IncomingHook[] = [];
const shownHooks: ShownHook[] = [];
const onlineHooks: OnlineHook[] = [];
let lent: ConsoleApi | undefined;
let signedIn: XmppClient | undefined;

export const hooks = {
  /** Called once by console.ts. */
  lend(a: ConsoleApi): void {
    lent = a;
  },
  api(): ConsoleApi {
    if (!lent) throw new Error('console api not lent yet');
    return lent;
  },
  /** The signed-in client (also while console.ts's sign-in is still finishing). */
  client(): XmppClient | undefined {
    return lent?.xmpp() ?? signedIn;
  },
  /** A feature that consumes a stanza returns true: the console then ignores it. */
  onStanza(f: StanzaHook): void {
    stanzaHooks.push(f);
  },
  /** A visitor's (or the server's) line the agent has not seen: background tab or another conversation. */
  onIncoming(f: IncomingHook): void {
    incomingHooks.push(f);
  },
  onShown(f: ShownHook): void {
    shownHooks.push(f);
  },
  /** Run after sign-in, before the console asks for its sessions. */
  onOnline(f: OnlineHook): void {
    onlineHooks.push(f);
  },
  stanza(el: XElement): boolean {
    return stanzaHooks.some((f) => f(el));
  },
  incoming(shop: string, visitor: string, text: string): void {
    for (const f of incomingHooks) f(shop, visitor, text);
  },
  shown(c: { shop: string; visitor: string } | undefined): void {
    for (const f of shownHooks) f(c);
  },
  async online(x: XmppClient): Promise<void> {
    signedIn = x;
    for (const f of onlineHooks) await f().catch(() => undefined);
  },
};
