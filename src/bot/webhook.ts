// The bot over HTTP: the question POSTed as JSON, the answer read as JSON. An answer is read up to a bound
// (maxBotAnswerBytes in the config) and no further: a larger one is a failed answer, not retried. Every HTTP request
// (each retry is one) is reported with its outcome and duration, for the metrics.
import type { BotConfig } from '../domain/shop.js';
import type { BotRequest, BotAnswer } from '../desk/ports.js';

/** How one request to a bot ended: an answer (a text, a hand-over, nothing to say) or why there was none. */
export type BotOutcome = 'answered' | 'handover' | 'empty' | 'http_error' | 'bad_answer' | 'timeout' | 'unreachable';

/** One HTTP request to a shop's bot, as the metrics count it. */
export interface BotRequestReport {
  shop: string;
  outcome: BotOutcome;
  seconds: number;
}

export class BotError extends Error {
  constructor(
    message: string,
    readonly outcome: BotOutcome = 'bad_answer',
  ) {
    super(message);
  }
}

/** The default bound on a bot answer's body (the config's maxBotAnswerBytes). */
export const DEFAULT_MAX_BOT_ANSWER_BYTES = 64 * 1024;

export async function askBot(
  bot: BotConfig,
  req: BotRequest,
  maxAnswerBytes = DEFAULT_MAX_BOT_ANSWER_BYTES,
  onRequest: (r: BotRequestReport) => void = () => {},
): Promise<BotAnswer> {
  if (!bot.url) throw new BotError('no bot url');
  let last: unknown;
  for (let attempt = 0; attempt <= bot.retries; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * attempt));
    const started = performance.now();
    const done = (outcome: BotOutcome) => onRequest({ shop: req.shop, outcome, seconds: (performance.now() - started) / 1000 });
    try {
      const answer = await once(bot.url, bot.timeoutMs, req, maxAnswerBytes);
      done(answer.handover ? 'handover' : answer.text ? 'answered' : 'empty');
      return answer;
    } catch (e) {
      done(outcomeOf(e));
      last = e;
      if (e instanceof BotError && e.message.startsWith('final')) break;
    }
  }
  throw last instanceof Error ? last : new BotError(String(last));
}

/** Why a request got no answer: its own BotError, the timeout (headers or body), or no connection at all. */
function outcomeOf(e: unknown): BotOutcome {
  if (e instanceof BotError) return e.outcome;
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) return 'timeout';
  return 'unreachable';
}

/** The body, up to `max` bytes; a longer one (declared or sent) is refused without reading the rest. */
async function readAtMost(res: Response, max: number): Promise<string> {
  const tooLong = () => new BotError(`final: bot answer larger than ${max} bytes (maxBotAnswerBytes)`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLong();
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read(); // also bounded by the signal
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw tooLong();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function once(url: string, timeoutMs: number, req: BotRequest, maxAnswerBytes: number): Promise<BotAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `${req.shop}/${req.visitor}/${req.id}` },
    body: JSON.stringify(req),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined); // what it says is not read
    const retry = res.status >= 500 || res.status === 408 || res.status === 429;
    throw new BotError(`${retry ? '' : 'final: '}bot answered HTTP ${res.status}`, 'http_error');
  }
  const text = await readAtMost(res, maxAnswerBytes);
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
