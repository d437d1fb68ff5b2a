// window.ConsultWidget, the small JS API a shop's page uses, and the postMessage protocol between the loader
// on the shop's page and the widget frame (our origin). Every message is {cw: 1, type, ...}; each side takes
// messages only from the other's window and origin. Nothing secret crosses: the frame keeps the visitor's
// account and tells the page only what the page may show (the state, and messages when it asked with on()).
import type { VisitorUser } from './visitor-context.js';

export const PROTOCOL = 1;

/** What the widget does for the API, in the page (same origin) or in the frame. */
export interface WidgetControl {
  open(): void;
  close(): void;
  toggle(): void;
  setUser(u: VisitorUser): void;
  setFields(f: Record<string, unknown>): void;
  setProduct(pid: string | null): void;
  setLocale(l: 'zh' | 'en'): void;
}

export interface WidgetMessage {
  who: 'me' | 'them' | 'system';
  text: string;
  at: number;
  from?: string;
}

/** Host → frame. */
export type Command =
  | { cw: 1; type: 'open' | 'close' | 'toggle' }
  | { cw: 1; type: 'user'; user: VisitorUser }
  | { cw: 1; type: 'fields'; fields: Record<string, unknown> }
  | { cw: 1; type: 'product'; product: string | null }
  | { cw: 1; type: 'locale'; locale: 'zh' | 'en' };

/** Frame → host. */
export type Event = { cw: 1; type: 'state'; open: boolean; unread: number } | { cw: 1; type: 'message'; message: WidgetMessage };

export type Listener = { message: (m: WidgetMessage) => void; unread: (n: number) => void; open: (o: boolean) => void };

export interface Emitter {
  emit<K extends keyof Listener>(event: K, ...args: Parameters<Listener[K]>): void;
}

/** Defines window.ConsultWidget over `control`; returns how the widget tells the page's listeners. */
export function installApi(control: WidgetControl): Emitter {
  const listeners: { [K in keyof Listener]: Listener[K][] } = { message: [], unread: [], open: [] };
  const api = {
    open: () => control.open(),
    close: () => control.close(),
    toggle: () => control.toggle(),
    setUser: (u: VisitorUser) => control.setUser({ ...u }),
    setFields: (f: Record<string, unknown>) => control.setFields({ ...f }),
    setProduct: (pid: string | null) => control.setProduct(pid == null ? null : String(pid)),
    setLocale: (l: 'zh' | 'en') => control.setLocale(l === 'zh' ? 'zh' : 'en'),
    on<K extends keyof Listener>(event: K, cb: Listener[K]) {
      if (!(event in listeners)) throw new Error(`ConsultWidget.on: no event ${String(event)} (message, unread, open)`);
      (listeners[event] as Listener[K][]).push(cb);
      return api;
    },
  };
  (window as unknown as { ConsultWidget: typeof api }).ConsultWidget = api;
  return {
    emit(event, ...args) {
      for (const cb of listeners[event]) {
        try {
          (cb as (...a: unknown[]) => void)(...args);
        } catch (e) {
          console.error('ConsultWidget listener:', e);
        }
      }
    },
  };
}

export const isProtocol = (d: unknown): d is { cw: 1; type: string } =>
  !!d && typeof d === 'object' && (d as { cw?: unknown }).cw === PROTOCOL && typeof (d as { type?: unknown }).type === 'string';
