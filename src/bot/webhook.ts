// The bot as an HTTP webhook. Contract (also in the README):
//   POST <bot.url>   content-type: application/json   idempotency-key: <shop>/<visitor>/<message id>
//   {"shop":"shop_2@host","visitor":"v@host","id":"<body id>","text":"…","msgType":"1",
//    "history":[{"at":1700000000000,"role":"visitor"|"bot"|"agent"|"system","who":"…","text":"…"}, …]}
// Answer 2xx with {"text":"…"} (sent to the visitor as msgType 47), {"handover":true} (a human takes over),
// or 204 / {} (nothing to say). A timeout (bot.timeoutMs per attempt), a network error, a 5xx, 408 or 429
// or a body that is not such JSON fails the attempt; it is retried bot.retries times (same idempotency key).
// Another 4xx is final. When every attempt failed the visitor goes to a human with a notice.
import type { Line } from '../domain/archive.js';
import type { BotConfig } from '../domain/shop.js';

export interface BotRequest {
  shop: string;
  visitor: string;
  id: string;
  text: string;
  msgType: string;
  history: Line[];
}

export interface BotAnswer {
  text?: string;
  handover?: boolean;
}

export class BotError extends Error {}

export async function askBot(bot: BotConfig, req: BotRequest): Promise<BotAnswer> {
  if (!bot.url) throw new BotError('no bot url');
  let last: unknown;
  for (let attempt = 0; attempt <= bot.retries; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * attempt));
    try {
      return await once(bot.url, bot.timeoutMs, req);
    } catch (e) {
      last = e;
      if (e instanceof BotError && e.message.startsWith('final')) break;
    }
  }
  throw last instanceof Error ? last : new BotError(String(last));
}

async function once(url: string, timeoutMs: number, req: BotRequest): Promise<BotAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `${req.shop}/${req.visitor}/${req.id}` },
    body: JSON.stringify(req),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text(); // also bounded by the signal
  if (!res.ok) {
    const retry = res.status >= 500 || res.status === 408 || res.status === 429;
    throw new BotError(`${retry ? '' : 'final: '}bot answered HTTP ${res.status}`);
  }
  if (!text.trim()) return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BotError('bot answer is not JSON');
  }
  if (typeof body !== 'object' || body === null) throw new BotError('bot answer is not a JSON object');
  const { text: t, handover } = body as Record<string, unknown>;
  if ((t !== undefined && typeof t !== 'string') || (handover !== undefined && typeof handover !== 'boolean'))
    throw new BotError('bot answer must be {"text": string} or {"handover": true}');
  return { ...(t ? { text: t } : {}), ...(handover ? { handover } : {}) };
}
