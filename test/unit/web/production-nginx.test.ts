// docs/production.md's nginx example is valid and says what the demo server says: its CSP lines are exactly
// scripts/web-server.ts's csp() for wss://chat.example.com/ws, and `nginx -t` accepts the server blocks (with the
// certificate and root paths pointed at temporary files) when nginx is installed (scripts/test.sh installs it).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { csp } from '../../../scripts/web-server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const guide = fs.readFileSync(path.join(root, 'docs/production.md'), 'utf8');
const nginxBlock = /^```nginx\n([\s\S]*?)^```$/m.exec(guide)?.[1] ?? '';
const SERVICE = 'wss://chat.example.com/ws';

const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));

const policyOf = (location: string) =>
  new RegExp(`location ${location.replace(/[.\\$~]/g, (c) => `\\${c}`)} \\{[^}]*Content-Security-Policy "([^"]*)"`).exec(nginxBlock)?.[1];

test('the guide has one nginx example with a WebSocket location', () => {
  assert.ok(nginxBlock.length > 0, 'a ```nginx block in docs/production.md');
  assert.match(nginxBlock, 'proxy_set_header Upgrade $http_upgrade;');
  assert.match(nginxBlock, 'location = /ws {');
});

test("the pages' CSP is web-server.ts's, for the wss service", () => {
  assert.is(policyOf('~ \\.html$'), csp(SERVICE));
});

test("the widget frame's CSP is web-server.ts's with the shops as frame-ancestors", () => {
  assert.is(policyOf('= /widget.html'), csp(SERVICE, 'https://shop.example https://*.shop.example'));
});

test('nginx -t accepts the example', () => {
  if (!nginx) {
    console.warn('  (nginx not installed: apt-get install nginx-light; the syntax check is skipped)');
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nginx-example-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=chat.example.com'].concat([
        '-keyout',
        path.join(dir, 'privkey.pem'),
        '-out',
        path.join(dir, 'fullchain.pem'),
      ]),
      { stdio: 'ignore' },
    );
    fs.mkdirSync(path.join(dir, 'dist-web'));
    const site = nginxBlock.replaceAll('/etc/ssl/chat.example.com/', `${dir}/`).replaceAll('/srv/consult/dist-web', `${dir}/dist-web`);
    assert.is.not(site, nginxBlock, 'the certificate paths were replaced');
    const conf = [
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log;`,
      'events {}',
      'http {',
      `  access_log off;`,
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      site,
      '}',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    const r = spawnSync(nginx, ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { encoding: 'utf8' });
    assert.is(r.status, 0, `nginx -t: ${r.stderr}`);
    assert.match(r.stderr, 'syntax is ok');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
