// The bounds of what a shop keeps for visitors not served yet: messages per visitor (waiting in the queue, on their
// way to an agent, or left outside opening hours), and visitors waiting in all (the queue and left messages).
import { type Decision, reject } from '../domain/decision.js';
import type { ShopState } from './state.js';

/** Kept messages are bounded per visitor, in number and in size (a few stanzas near maxStanzaBytes fill it). */
export function keptFull(st: ShopState, visitor: string, xml: string): Decision | undefined {
  const kept = st.kept.get(visitor) ?? [];
  if (kept.length >= st.limits.keptPerVisitor) {
    return reject(
      'resource-constraint',
      'wait',
      `${kept.length} of your messages are already waiting for an agent of ${st.shop}; please wait for a reply`,
    );
  }
  let bytes = xml.length;
  for (const m of kept) bytes += m.xml.length;
  if (bytes <= st.limits.keptBytesPerVisitor) return undefined;
  return reject(
    'resource-constraint',
    'wait',
    `your messages waiting for an agent of ${st.shop} would exceed ${st.limits.keptBytesPerVisitor} bytes; please wait for a reply`,
  );
}

/** A new waiting visitor (in the queue or as a left message) when queueMax visitors already wait: refused. */
export function waitingFull(st: ShopState, what: string): Decision | undefined {
  const waiting = st.queue.size + st.left.size;
  if (waiting < st.limits.queueMax) return undefined;
  return reject('resource-constraint', 'wait', `${waiting} visitors are already waiting for ${st.shop}; please ${what} later`);
}
