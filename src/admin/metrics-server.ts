// /metrics on a listener of its own (config `metrics`, loopback by default): no token, and there whether or not the
// admin API runs. It serves GET /metrics and nothing else.
import { createServer } from 'node:http';
import type client from 'prom-client';
import { type Listener, listen } from './listen.js';

export type MetricsServer = Listener;

export async function startMetricsServer(registry: client.Registry, host: string, port: number): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics here\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e.message}\n`),
    );
  });
  return listen(server, host, port);
}
