// LISTEN on a PostgreSQL connection of its own, kept up: when the connection is lost (the server restarted, a dead
// peer, a server that stopped answering the periodic ping) it is opened again with backoff and LISTEN issued again.
// A NOTIFY sent while it was down is lost, so the listener is told once after every reconnect.
import type { Log } from '../domain/log.js';

/** The little of a pg Client this needs (a fake in tests is possible, the driver passes a real one). */
export interface ListenClient {
  connect(): Promise<unknown>;
  query(sql: string): Promise<unknown>;
  end(): Promise<void>;
  escapeIdentifier(name: string): string;
  on(event: 'error', fn: (err: Error) => void): unknown;
  on(event: 'end', fn: () => void): unknown;
  on(event: 'notification', fn: (n: { channel: string }) => void): unknown;
}

export interface KeepListeningOptions {
  channel: string;
  /** Every NOTIFY on the channel, and once after each reconnect. */
  onNotify: () => void;
  /** A new, unconnected client for each attempt (with its own connect and query timeouts and TCP keepalive). */
  newClient: () => ListenClient;
  log: Log;
  /** The wait before the first attempt after a loss; doubled after each failed one up to maxRetryMs, reset on success. */
  firstRetryMs?: number;
  maxRetryMs?: number;
  /** How often the idle connection is checked with a query (a server that hangs answers nothing, sends no reset). */
  pingMs?: number;
}

export interface KeptListener {
  /**
   * Resolves once LISTEN is first in place. If that first attempt fails it rejects (the caller says that
   * announcements are missing) and the listener keeps trying in the background all the same, until close().
   */
  ready: Promise<void>;
  close(): Promise<void>;
}

export function keepListening(opts: KeepListeningOptions): KeptListener {
  const { channel, onNotify, newClient, log, firstRetryMs = 100, maxRetryMs = 5000, pingMs = 5000 } = opts;
  let current: ListenClient | undefined;
  let closed = false;
  let down = false; // lost (or never up) and not back yet: said once, not per attempt
  let retryMs = firstRetryMs;
  let retry: NodeJS.Timeout | undefined;
  let ping: NodeJS.Timeout | undefined;

  const drop = (client: ListenClient) => void client.end().catch(() => undefined);

  const lost = (client: ListenClient, err: unknown) => {
    if (client !== current || closed) return;
    current = undefined;
    clearInterval(ping);
    drop(client);
    if (!down) {
      down = true;
      log.warn('lost the PostgreSQL connection that hears announcements (LISTEN): reconnecting; lease rounds go on meanwhile', {
        channel,
        err,
      });
    }
    schedule();
  };

  const schedule = () => {
    if (closed) return;
    retry = setTimeout(() => void attempt().catch(() => schedule()), retryMs);
    retry.unref();
    retryMs = Math.min(retryMs * 2, maxRetryMs);
  };

  const attempt = async () => {
    const client = newClient();
    client.on('error', (err) => lost(client, err)); // also keeps an error event from crashing the process
    client.on('end', () => lost(client, new Error('connection ended')));
    client.on('notification', (n) => {
      if (n.channel === channel) onNotify();
    });
    const listen = `LISTEN ${client.escapeIdentifier(channel)}`;
    try {
      await client.connect();
      await client.query(listen);
    } catch (e) {
      drop(client);
      throw e;
    }
    if (closed) return drop(client);
    current = client;
    retryMs = firstRetryMs;
    // The ping is LISTEN again (a no-op when listening): pg_stat_activity keeps showing what the connection is for.
    ping = setInterval(() => void client.query(listen).catch((e) => lost(client, e)), pingMs);
    ping.unref();
    if (down) {
      down = false;
      log.info('announcements (LISTEN) heard again: reconnected to PostgreSQL', { channel });
      onNotify(); // one may have been missed meanwhile
    }
  };

  const ready = attempt().catch((e) => {
    down = true; // the caller reports this one
    schedule();
    throw e;
  });
  ready.catch(() => undefined); // the caller may not wait for it
  return {
    ready,
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(ping);
      const c = current;
      current = undefined;
      await c?.end().catch(() => undefined);
    },
  };
}
