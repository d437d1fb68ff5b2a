// A real HTTP webhook receiver for the events-out tests: it checks each request's signature as a receiver should
// (X-Consult-Signature over X-Consult-Timestamp + "." + body, with the shared secret), keeps every request in the
// order it came, and answers as the test says: 204, a 500, or nothing at all until released (a hanging endpoint).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  id: string;
  timestamp: string;
  /** Whether the signature is the HMAC of this body with the secret. */
  signed: boolean;
  body: Record<string, unknown> & { id: string; type: string; visitor: string; session: string; seq: number };
  raw: string;
}

export type Answer = 'ok' | 'fail' | 'hold';

export class EventReceiver {
  /** Every request, in arrival order (retries and re-sends included). */
  readonly received: Received[] = [];
  /** How the next requests are answered. */
  answer: Answer = 'ok';
  /** With 'fail': this many requests get a 500, then 'ok' again. */
  failures = 0;
  private held: { res: ServerResponse; r: Received }[] = [];
  private readonly server = createServer((req, res) => void this.handle(req, res));

  constructor(readonly secret: string) {}

  async start(port = 0): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/events`;
  }

  /** Requests held unanswered now. */
  get holding(): number {
    return this.held.length;
  }

  /** The distinct events answered 2xx, first copy of each id, in the order first answered. */
  get accepted(): Received[] {
    return this.acceptedList;
  }
  private readonly acceptedList: Received[] = [];
  private readonly acceptedIds = new Set<string>();

  /** Answers the held requests (204) and answers the next ones at once. */
  release(): void {
    this.answer = 'ok';
    for (const { res, r } of this.held.splice(0)) {
      if (res.destroyed) continue;
      if (!this.acceptedIds.has(r.id)) this.accept(r);
      res.writeHead(204).end();
    }
  }

  /** Drops the held requests' connections without an answer (the sender never learns whether they arrived). */
  dropHeld(): void {
    for (const { res } of this.held.splice(0)) res.destroy();
  }

  async close(): Promise<void> {
    this.dropHeld();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const id = String(req.headers['x-consult-event-id'] ?? '');
    const timestamp = String(req.headers['x-consult-timestamp'] ?? '');
    const given = Buffer.from(String(req.headers['x-consult-signature'] ?? ''));
    const expected = Buffer.from(`sha256=${createHmac('sha256', this.secret).update(`${timestamp}.${raw}`).digest('hex')}`);
    const signed = given.length === expected.length && timingSafeEqual(given, expected);
    const r: Received = { id, timestamp, signed, body: JSON.parse(raw), raw };
    this.received.push(r);
    if (!signed) {
      res.writeHead(401).end();
      return;
    }
    if (this.answer === 'hold') {
      this.held.push({ res, r });
      return;
    }
    if (this.answer === 'fail' && this.failures > 0) {
      this.failures--;
      if (this.failures === 0) this.answer = 'ok';
      res.writeHead(500).end();
      return;
    }
    if (!this.acceptedIds.has(id)) this.accept(r);
    res.writeHead(204).end();
  }

  private accept(r: Received): void {
    this.acceptedIds.add(r.id);
    this.acceptedList.push(r);
  }
}
