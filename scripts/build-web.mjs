// Builds the browser side into dist-web/: the visitor widget (web/widget) and the agent console
// (web/console), bundled with esbuild for the browser (@xmpp/client's browser build: WebSocket,
// no TCP/TLS), plus the static pages of web/public. `npm run build:web`.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist-web');
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
await build({
  entryPoints: { widget: path.join(root, 'web/widget/widget.ts'), console: path.join(root, 'web/console/console.ts') },
  outdir: out,
  bundle: true,
  platform: 'browser',
  format: 'iife', // a classic script: document.currentScript works, no type=module needed on a shop's page
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
  plugins: [
    {
      // @xmpp/resolve's browser field maps "./lib/dns" to false, but it imports "./lib/dns.js", which wants
      // node:dns; DNS lookups are not used over WebSocket (the service URL is given), so stub it.
      name: 'no-node-dns',
      setup(b) {
        b.onResolve({ filter: /^node:dns$/ }, () => ({ path: 'node:dns', namespace: 'stub' }));
        b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({
          contents: 'export default {}; export const lookup = undefined; export const promises = {};',
          loader: 'js',
        }));
      },
    },
  ],
});
fs.copyFileSync(path.join(root, 'web/widget/widget.css'), path.join(out, 'widget.css'));
for (const f of fs.readdirSync(path.join(root, 'web/public'))) fs.copyFileSync(path.join(root, 'web/public', f), path.join(out, f));
console.log(`dist-web/: ${fs.readdirSync(out).sort().join(' ')}`);
