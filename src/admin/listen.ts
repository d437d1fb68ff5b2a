// Starting and stopping an HTTP listener, the same for the admin API and the /metrics listener.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Listener {
  server: Server;
  /** The port it listens on (the one the system chose for port 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Listens on host:port, failing if the port cannot be had. close() runs `beforeClose`, stops accepting and ends the
 * open connections: a keep-alive client or scraper must not hold shutdown open.
 */
export async function listen(server: Server, host: string, port: number, beforeClose: () => void = () => {}): Promise<Listener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        beforeClose();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
