// Webhook events over HTTP: one POST per event, its JSON body signed with the hook's secret. The receiver checks
// X-Consult-Signature = "sha256=" + hex HMAC-SHA256(secret, X-Consult-Timestamp + "." + body), refuses a timestamp
// too far from its clock (a replayed request), and keeps one event per X-Consult-Event-Id (a retry sends the same).
import { createHmac } from 'node:crypto';
import type { EventHook } from '../domain/config.js';
import type { EventDelivery } from '../desk/ports.js';

/** The signature header's value for a body sent at `timestamp` (ms since the epoch, as X-Consult-Timestamp says). */
export function eventSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class EventHookError extends Error {}

/** POSTs one event; resolves on 2xx, rejects on another status, no answer within hook.timeoutMs, or `signal`. */
export async function postEvent(hook: EventHook, d: EventDelivery, signal: AbortSignal, now: () => number = Date.now): Promise<void> {
  const timestamp = String(now());
  const res = await fetch(hook.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-consult-event-id': d.id,
      'x-consult-timestamp': timestamp,
      'x-consult-signature': eventSignature(hook.secret, timestamp, d.body),
    },
    body: d.body,
    signal: AbortSignal.any([signal, AbortSignal.timeout(hook.timeoutMs)]),
  });
  await res.body?.cancel().catch(() => undefined); // what it says is not read
  if (res.status < 200 || res.status > 299) throw new EventHookError(`webhook answered HTTP ${res.status}`);
}
