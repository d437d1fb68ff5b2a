// Static server for the browser side (dist-web/, `npm run build:web`): the visitor widget
// (/widget.js, /widget.css), a demo shop page (/shop.html) and the agent console (/console.html),
// plus /config.json telling the pages where ejabberd's WebSocket is. node:http only, loopback by
// default, GET/HEAD only, with content types, caching headers and a Content-Security-Policy.
//
//   tsx scripts/web-server.ts --port 8080 --service ws://127.0.0.1:5280/ws --domain localhost
//        [--visitor-domain visitors.localhost] [--shop shop_2@localhost]... [--root dist-web] [--host 127.0.0.1]
//        [--frame-ancestors "https://shop.example https://*.shop.example"]  (who may embed widget.html; default *)
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface WebServerOptions {
  host?: string;
  port: number; // 0: any free port
  root?: string; // default <repo>/dist-web
  service: string; // ws://127.0.0.1:<ejabberd http port>/ws
  domain: string;
  visitorDomain: string;
  shops: string[]; // the first is the demo page's shop
  /**
   * Who may embed the widget frame (widget.html): CSP frame-ancestors sources, default ['*'] (any shop's page).
   * Every other page (the console, the demo page) keeps frame-ancestors 'none'.
   */
  frameAncestors?: string[];
}

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};

export function csp(service: string, frameAncestors = "'none'"): string {
  const ws = new URL(service);
  // mod_http_upload sits on the same ejabberd HTTP listener as the WebSocket: attachments are PUT and shown from there.
  const upload = `${ws.protocol === 'wss:' ? 'https:' : 'http:'}//${ws.host}`;
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data: ${upload}`,
    `connect-src 'self' ${ws.protocol}//${ws.host} ${upload}`,
    "base-uri 'none'",
    "form-action 'self'",
    `frame-ancestors ${frameAncestors}`,
  ].join('; ');
}

export function startWebServer(o: WebServerOptions): Promise<WebServer> {
  const root = path.resolve(o.root ?? path.join(repoRoot, 'dist-web'));
  if (!fs.existsSync(path.join(root, 'widget.js'))) throw new Error(`${root}/widget.js is missing: run npm run build:web`);
  const config = JSON.stringify({ service: o.service, domain: o.domain, visitorDomain: o.visitorDomain, shops: o.shops });
  const policy = csp(o.service);
  const framePolicy = csp(o.service, (o.frameAncestors ?? ['*']).join(' '));
  const common = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

  const server = http.createServer((req, res) => {
    const send = (status: number, headers: Record<string, string>, body: string | Buffer = '') => {
      res.writeHead(status, { ...common, ...headers, 'content-length': String(Buffer.byteLength(body)) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(405, { allow: 'GET, HEAD', 'content-type': TYPES['.txt']! }, 'method not allowed\n');
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(400, { 'content-type': TYPES['.txt']! }, 'bad request\n');
    }
    if (pathname === '/') return send(302, { location: '/shop.html', 'cache-control': 'no-cache' });
    if (pathname === '/config.json') {
      // Fetched by the widget from any page that embeds it.
      return send(200, { 'content-type': TYPES['.json']!, 'cache-control': 'no-store', 'access-control-allow-origin': '*' }, config);
    }
    const file = path.join(root, path.normalize(pathname).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      return send(404, { 'content-type': TYPES['.txt']! }, 'not found\n');
    }
    const ext = path.extname(file);
    let body = fs.readFileSync(file);
    if (pathname === '/shop.html' && o.shops[0]) body = Buffer.from(body.toString('utf8').replaceAll('shop_2@localhost', o.shops[0]));
    const etag = `"${crypto.createHash('sha1').update(body).digest('base64url').slice(0, 16)}"`;
    const headers: Record<string, string> = {
      'content-type': TYPES[ext] ?? 'application/octet-stream',
      etag,
      // Pages are revalidated every time; the widget and assets may be cached a few minutes (their names carry no hash).
      'cache-control': ext === '.html' ? 'no-cache' : 'public, max-age=300',
    };
    // The widget frame is embedded by shops' pages (frameAncestors); every other page by nobody.
    if (pathname === '/widget.html') headers['content-security-policy'] = framePolicy;
    else if (ext === '.html') Object.assign(headers, { 'content-security-policy': policy, 'x-frame-options': 'DENY' });
    else headers['access-control-allow-origin'] = '*'; // the widget and its stylesheet are embedded by other sites
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { ...common, etag, 'cache-control': headers['cache-control']! });
      return res.end();
    }
    send(200, headers, body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host ?? '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://${o.host ?? '127.0.0.1'}:${port}`,
        port,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8080' },
      root: { type: 'string' },
      service: { type: 'string' },
      domain: { type: 'string', default: 'localhost' },
      'visitor-domain': { type: 'string' },
      shop: { type: 'string', multiple: true },
      'frame-ancestors': { type: 'string' }, // space-separated CSP sources for the widget frame, default *
    },
  });
  const domain = values.domain!;
  if (!values.service) {
    console.error('web-server: --service ws://127.0.0.1:<ejabberd http port>/ws is required');
    process.exit(2);
  }
  startWebServer({
    host: values.host,
    port: Number(values.port),
    root: values.root,
    service: values.service,
    domain,
    visitorDomain: values['visitor-domain'] ?? `visitors.${domain}`,
    shops: values.shop ?? [`shop_2@${domain}`],
    frameAncestors: values['frame-ancestors']?.split(/\s+/).filter(Boolean),
  }).then(
    (s) => {
      console.log(`web: demo shop ${s.url}/shop.html  agent console ${s.url}/console.html  (static files from dist-web/)`);
      for (const sig of ['SIGINT', 'SIGTERM'] as const)
        process.once(sig, () => {
          void s.close().then(() => process.exit(0));
        });
    },
    (e: Error) => {
      console.error(`web-server: ${e.message}`);
      process.exit(1);
    },
  );
}
