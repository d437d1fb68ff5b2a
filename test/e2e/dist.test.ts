// The built sidecar (dist/, `npm run build`) runs from a production install: package.json,
// package-lock.json and dist/ copied to an empty directory, `npm ci --omit=dev`, then
// `node dist/main.js` serves grpc.health and Filter, and both bins answer --help.
// Proves that nothing under src/ needs a devDependency (tsx, typescript, ts-proto, ...) at run time.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Action, Hook, StanzaFilterClient, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { writeConfig } from '../support/sidecar.js';
import { setUpSuite } from '../support/suite.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'dist.test';
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

const newest = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
    const p = path.join(dir, e.name);
    return Math.max(m, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }, 0);

/** dist/ as `npm test` leaves it; built here when missing or older than src/ (running this file alone). */
function ensureBuilt(): void {
  const main = path.join(repoRoot, 'dist/main.js');
  if (fs.existsSync(main) && fs.statSync(main).mtimeMs >= newest(path.join(repoRoot, 'src'))) return;
  execFileSync(NPM, ['run', 'build'], { cwd: repoRoot, stdio: 'inherit' });
}

/** Bare module specifiers (static and dynamic imports) of every file under dist/. */
function bareImports(dir: string): Set<string> {
  const out = new Set<string>();
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      for (const s of bareImports(p)) out.add(s);
      continue;
    }
    if (!e.name.endsWith('.js')) continue;
    const src = fs.readFileSync(p, 'utf8');
    for (const m of src.matchAll(/(?:\sfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (!spec.startsWith('.') && !spec.startsWith('node:')) out.add(spec);
    }
  }
  return out;
}

const until = async <T>(what: string, fn: () => T | undefined, ms: number, log: () => string): Promise<T> => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** `node dist/main.js` in `dir`; resolves once it logged "sidecar listening". */
async function startBuilt(dir: string, config: string, grpcPort: number) {
  const child = spawn(process.execPath, ['dist/main.js', '--config', config, '--grpc-port', String(grpcPort)], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await until(
      '"sidecar listening"',
      () => {
        if (child.exitCode !== null) throw new Error(`node dist/main.js exited ${child.exitCode}:\n${out}`);
        return out.includes('sidecar listening') || undefined;
      },
      60_000,
      () => out,
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    out: () => out,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

let prod = '';

setUpSuite(test, async () => {
  ensureBuilt();
  prod = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-dist-'));
  for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(repoRoot, f), path.join(prod, f));
  fs.cpSync(path.join(repoRoot, 'dist'), path.join(prod, 'dist'), { recursive: true });
  // The npm cache holds every package after the checkout's own `npm ci`; --prefer-offline uses it.
  const r = spawnSync(NPM, ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: prod,
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`npm ci --omit=dev failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
});

test.after(() => {
  if (prod) fs.rmSync(prod, { recursive: true, force: true });
});

test('npm ci --omit=dev installs no devDependency, and every package dist/ imports resolves there', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
  const lock = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8'));
  // Dev-only per the lock file (@types/node, for one, is also pulled in by protobufjs).
  const devOnly = Object.keys(pkg.devDependencies).filter((d) => lock.packages[`node_modules/${d}`]?.dev);
  assert.ok(
    ['tsx', 'typescript', 'ts-proto', '@xmpp/client'].every((d) => devOnly.includes(d)),
    devOnly.join(', '),
  );
  for (const dev of devOnly) assert.not.ok(fs.existsSync(path.join(prod, 'node_modules', dev)), `devDependency ${dev} was installed`);
  const specs = [...bareImports(path.join(prod, 'dist'))].sort();
  assert.ok(specs.includes('@grpc/grpc-js') && specs.includes('@electric-sql/pglite') && specs.includes('pg'), specs.join(', '));
  for (const s of specs) {
    const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!;
    assert.ok(name in pkg.dependencies, `dist/ imports ${s}, which is not in "dependencies"`);
  }
  // Load them all (dynamic imports included: the SQL stores load pg / PGlite only when configured).
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `for (const s of ${JSON.stringify(specs)}) await import(s);`], {
    cwd: prod,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  assert.is(r.status, 0, r.stderr);
});

test('--help: node dist/main.js, node dist/cli.js and the executable bins exit 0 with usage', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(prod, 'package.json'), 'utf8'));
  assert.equal(pkg.bin, { 'consult-router': 'dist/main.js', consultctl: 'dist/cli.js' });
  for (const [bin, file] of Object.entries(pkg.bin as Record<string, string>)) {
    const viaNode = spawnSync(process.execPath, [file, '--help'], { cwd: prod, encoding: 'utf8' });
    assert.is(viaNode.status, 0, `${file} --help: ${viaNode.stderr}`);
    assert.match(viaNode.stdout, new RegExp(`^usage: ${bin} `));
    assert.ok(fs.readFileSync(path.join(prod, file), 'utf8').startsWith('#!/usr/bin/env node\n'), `${file} shebang`);
    const direct = spawnSync(path.join(prod, file), ['--help'], { cwd: prod, encoding: 'utf8' });
    assert.is(direct.status, 0, `./${file} --help: ${direct.error ?? direct.stderr}`);
  }
  const bad = spawnSync(process.execPath, ['dist/main.js', '--no-such-flag'], { cwd: prod, encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /usage: consult-router/);
});

test('--version: both bins print package.json’s version, also when linked onto PATH as the install does', () => {
  const { version, bin } = JSON.parse(fs.readFileSync(path.join(prod, 'package.json'), 'utf8'));
  // docs/operations.md, "Install as a service": a symlink per bin in a directory on PATH.
  const binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-bin-'));
  try {
    for (const [name, file] of Object.entries(bin as Record<string, string>))
      fs.symlinkSync(path.join(prod, file), path.join(binDir, name));
    for (const name of Object.keys(bin)) {
      const r = spawnSync(name, ['--version'], {
        cwd: os.tmpdir(),
        encoding: 'utf8',
        env: { ...process.env, PATH: `${binDir}${path.delimiter}${process.env.PATH}` },
      });
      assert.equal([r.status, r.stdout], [0, `${version}\n`], `${name} --version: ${r.error ?? r.stderr}`);
    }
  } finally {
    fs.rmSync(binDir, { recursive: true, force: true });
  }
});

test('node dist/main.js (memory:) from the production install: listening, grpc.health SERVING, Filter relays, SIGTERM exits 0', async () => {
  const grpcPort = await freePort();
  const config = writeConfig({
    store: 'memory:',
    admin: { port: await freePort(), token: 'dist-test-admin-token' },
    shops: [{ jid: `shop@${D}`, name: 'Dist', agents: [{ jid: `ann@${D}`, maxSessions: 2, status: 'always-on' }] }],
  });
  const sidecar = await startBuilt(prod, config, grpcPort);
  const channels: grpc.Client[] = [];
  try {
    assert.match(sidecar.out(), /"msg":"sidecar listening"/);
    const Health = grpc.makeClientConstructor(healthService, 'grpc.health.v1.Health');
    const health = new Health(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, (...args: any[]) => unknown>;
    channels.push(health);
    const check = (service: string) =>
      new Promise<string>((resolve, reject) =>
        health.check({ service }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r.status))),
      );
    const status = await check('consult.v1.StanzaFilter');
    assert.is(status, 'SERVING');
    assert.is(await check(''), 'SERVING', 'the server as a whole');
    const unknown = await check('no.such.Service').then(
      (st) => new Error(`an unknown service answered ${st}`),
      (e: grpc.ServiceError) => e,
    );
    assert.is(
      (unknown as grpc.ServiceError).code,
      grpc.status.NOT_FOUND,
      'a real health service, not a stub that says SERVING to anything',
    );

    const client = new StanzaFilterClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    channels.push(client);
    const verdict = await new Promise<Verdict>((resolve, reject) =>
      client.filter(
        {
          seq: '1',
          hook: Hook.HOOK_FILTER_PACKET,
          host: D,
          deadlineMs: String(Date.now() + 10_000),
          stanza: Buffer.from(`<message type='consult' from='v1@${D}/web' to='shop@${D}'><body id='b1'>hi</body></message>`),
        },
        (e, r) => (e ? reject(e) : resolve(r!)),
      ),
    );
    assert.is(verdict.action, Action.ACTION_REWRITE, JSON.stringify(verdict));
    assert.is(verdict.seq, '1', 'the answer to this request');
    assert.match(Buffer.from(verdict.stanza).toString(), new RegExp(`to=['"]ann@${D}['"]`));
    const extra = verdict.extra.map((x) => Buffer.from(x).toString());
    assert.is(extra.length, 2, extra.join('\n'));
    assert.match(extra[0], /type=['"]mstat['"]/, 'the visitor is acked');
    assert.match(extra[1], /auto_reply=['"]true['"]/, 'and welcomed');
    assert.is(await sidecar.stop(), 0, sidecar.out());
  } finally {
    for (const c of channels) c.close();
    sidecar.kill();
    fs.rmSync(path.dirname(config), { recursive: true, force: true });
  }
});

test('node dist/main.js with a PGlite store (loaded on demand) from the production install', async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-dist-pglite-'));
  const config = writeConfig({ store: `pglite:${data}`, shops: [{ jid: `shop@${D}`, name: 'Dist', agents: [] }] });
  try {
    const sidecar = await startBuilt(prod, config, await freePort());
    try {
      assert.match(sidecar.out(), /store seeded from config/);
      assert.is(await sidecar.stop(), 0, sidecar.out());
    } finally {
      sidecar.kill();
    }
  } finally {
    fs.rmSync(data, { recursive: true, force: true });
    fs.rmSync(path.dirname(config), { recursive: true, force: true });
  }
});

test.run();
