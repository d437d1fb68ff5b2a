// The widget frame's side of the postMessage protocol (see api.ts): commands only from the embedding page
// (window.parent, at the origin that embeds us), events only to that origin. The origin is the browser's
// own account of the embedder (location.ancestorOrigins) where it has one, else the loader's `parent`
// parameter; frame-ancestors in the frame page's CSP says which sites may embed it at all.
import { type Command, type Event, isProtocol, type WidgetControl } from './api.js';

export interface FrameLink {
  send(e: Event): void;
}

export function parentOrigin(): string | undefined {
  const ancestors = (location as Location & { ancestorOrigins?: DOMStringList }).ancestorOrigins;
  if (ancestors && ancestors.length > 0) return ancestors[0]!;
  const given = new URLSearchParams(location.search).get('parent');
  try {
    return given ? new URL(given).origin : undefined;
  } catch {
    return undefined;
  }
}

export function linkToParent(control: WidgetControl): FrameLink | undefined {
  const origin = parentOrigin();
  if (window.parent === window || !origin) return undefined;
  const send = (e: Event | { cw: 1; type: 'ready' }) => window.parent.postMessage(e, origin);
  window.addEventListener('message', (ev: MessageEvent) => {
    if (ev.source !== window.parent || ev.origin !== origin || !isProtocol(ev.data)) return;
    const c = ev.data as Command;
    if (c.type === 'open') control.open();
    else if (c.type === 'close') control.close();
    else if (c.type === 'toggle') control.toggle();
    else if (c.type === 'user' && c.user && typeof c.user === 'object') control.setUser(c.user);
    else if (c.type === 'fields' && c.fields && typeof c.fields === 'object') control.setFields(c.fields);
    else if (c.type === 'product') control.setProduct(typeof c.product === 'string' ? c.product : null);
    else if (c.type === 'locale') control.setLocale(c.locale === 'zh' ? 'zh' : 'en');
  });
  send({ cw: 1, type: 'ready' });
  return { send };
}
