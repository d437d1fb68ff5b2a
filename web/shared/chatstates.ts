// Typing notifications both ways (XEP-0085 chat states). The sender side: `composing` on the first keystroke,
// `paused` after a few idle seconds or an emptied input; the message itself carries `active` (shared/consult.ts).
// The receiver side: a "typing…" line shown while the other side composes, hidden on `paused`, `active`, a message
// or a long silence (a lost `paused` must not leave it on for ever). The sidecar relays body-less chat states of an
// open session both ways (src/routing/visitor.ts, agent.ts); before a session there is nobody to tell.
import type { XElement } from '@xmpp/client';
import { NS_CHATSTATES, h } from './consult.js';

export type ChatState = 'active' | 'composing' | 'paused' | 'inactive' | 'gone';
const STATES: ChatState[] = ['active', 'composing', 'paused', 'inactive', 'gone'];

/** Idle time after which `paused` follows `composing`. */
const PAUSE_AFTER_MS = 4000;
/** A `composing` not refreshed or ended within this long is shown no more. */
const SHOWN_FOR_MS = 30_000;

/** The chat state a message carries, if any. */
export function chatStateOf(el: XElement): ChatState | undefined {
  return STATES.find((s) => el.getChild(s, NS_CHATSTATES));
}

/**
 * Tells the other side when this one types: call `input(text)` on every input event and `sent()` when the message
 * goes (it carries `active` itself). `send` gets the state to send; failures are the connection's business.
 */
export function typingNotifier(send: (state: 'composing' | 'paused') => void) {
  let composing = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = (tell: boolean) => {
    clearTimeout(timer);
    timer = undefined;
    if (composing && tell) send('paused');
    composing = false;
  };
  return {
    input(text: string): void {
      if (!text.trim()) {
        stop(true);
        return;
      }
      if (!composing) {
        composing = true;
        send('composing');
      }
      clearTimeout(timer);
      timer = setTimeout(() => stop(true), PAUSE_AFTER_MS);
    },
    /** The message was sent: its `active` ends the composing state, nothing more to send. */
    sent(): void {
      stop(false);
    },
  };
}

/** The "typing…" line: `set(state)` from the other side's chat states, `clear()` when its message arrives. */
export function typingIndicator(className: string, text = '正在输入 typing…') {
  const el = h('p', { class: className, role: 'status', 'aria-live': 'polite', hidden: '' }, text);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clear = () => {
    clearTimeout(timer);
    el.hidden = true;
  };
  return {
    el,
    set(state: ChatState): void {
      if (state !== 'composing') {
        clear();
        return;
      }
      el.hidden = false;
      clearTimeout(timer);
      timer = setTimeout(clear, SHOWN_FOR_MS);
    },
    clear,
  };
}
