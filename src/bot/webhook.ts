import type { BotConfig } from '../domain/shop.js';
import type { BotRequest, BotAnswer } from '../desk/ports.js';

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
