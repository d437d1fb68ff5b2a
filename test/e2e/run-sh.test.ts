// scripts/run.sh as a newcomer runs it, on ports and a run directory of its own: the admin API gets a random token
// made on the first run (mode 600 in the run directory, consultctl finds it there), never the example's placeholder;
// ejabberd's HTTP listener serves no admin API (nobody on the machine can register accounts or stop ejabberd through
// it); an ejabberd that dies is noticed and started again; scripts/stop.sh stops everything.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createServer, connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

const until = async (what: string, ok: () => boolean | Promise<boolean>, ms: number, log: () => string) => {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; run.sh said:\n${log()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

test('run.sh: a random admin token in the run directory, no ejabberd HTTP API, a dead ejabberd started again', async () => {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-run-sh-'));
  fs.chmodSync(runDir, 0o755); // user ejabberd works in runDir/ejabberd
  const ports = {
    SIDECAR_PORT: await freePort(),
    SIDECAR_ADMIN_PORT: await freePort(),
    XMPP_PORT: await freePort(),
    WEB_PORT: await freePort(),
    EJABBERD_HTTP_PORT: await freePort(),
  };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONSULT_RUN_DIR: runDir,
    CONSULT_STORE: 'memory:',
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
  };
  delete env.CONSULT_ADMIN_TOKEN;
  delete env.CONSULT_ADMIN_URL;
  const run = spawn('scripts/run.sh', [], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  run.stdout.on('data', (d) => {
    out += d;
  });
  run.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => run.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const log = () => out;
  try {
    // Builds may run first (dist/ older than src/).
    await until('run.sh to be running', () => out.includes('==> ') && /\] running \(run dir/.test(out), 300_000, log);
    assert.not.ok(gone);

    // The admin token: made here, mode 600, said where; the sidecar uses it, not the example's.
    const tokenFile = path.join(runDir, 'admin-token');
    assert.ok(fs.existsSync(tokenFile), `no ${tokenFile}\n${out}`);
    assert.is(fs.statSync(tokenFile).mode & 0o777, 0o600);
    const token = fs.readFileSync(tokenFile, 'utf8').trim();
    assert.ok(/^[0-9a-f]{48}$/.test(token), 'random');
    assert.match(out, `admin API token: made a new one in ${tokenFile}`);
    const effective = JSON.parse(fs.readFileSync(path.join(runDir, 'consult.json'), 'utf8'));
    assert.is(effective.admin.token, token);
    const admin = `http://127.0.0.1:${ports.SIDECAR_ADMIN_PORT}`;
    const shops = (t: string) => fetch(`${admin}/shops`, { headers: { authorization: `Bearer ${t}` } }).then((r) => r.status);
    assert.is(await shops(token), 200);
    assert.is(await shops('change-me-admin-token'), 401, 'the example placeholder opens nothing');
    const ctl = spawnSync(process.execPath, ['dist/cli.js', 'shops'], { cwd: repoRoot, env, encoding: 'utf8' });
    assert.is(ctl.status, 0, `consultctl with the run directory's token and URL: ${ctl.stderr}`);
    assert.match(ctl.stdout, /shop_2@localhost/);

    // ejabberd's HTTP listener: no admin API to register accounts (or restart ejabberd) with.
    const register = await fetch(`http://127.0.0.1:${ports.EJABBERD_HTTP_PORT}/api/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'intruder', host: 'localhost', password: 'x' }),
    });
    assert.is.not(register.status, 200, await register.text());
    const yml = fs.readFileSync(path.join(runDir, 'ejabberd', 'ejabberd.yml'), 'utf8');
    assert.not.match(yml, /mod_http_api/);
    assert.match(yml, /\/ws: ejabberd_http_ws/, 'the WebSocket stays for the web pages');

    // ejabberd dies: run.sh says so and starts it again.
    const pid = Number(fs.readFileSync(path.join(runDir, 'ejabberd', 'ejabberd.pid'), 'utf8').trim());
    assert.ok(pid > 1);
    process.kill(pid, 'SIGKILL');
    await until('run.sh to notice', () => /ejabberd \(\S+\) is gone after \d+s; restart #1/.test(out), 30_000, log);
    await until('ejabberd restarted', () => out.includes('ejabberd restarted'), 120_000, log);
    assert.ok(await listening(ports.XMPP_PORT), 'c2s is back');
    const newPid = Number(fs.readFileSync(path.join(runDir, 'ejabberd', 'ejabberd.pid'), 'utf8').trim());
    assert.is.not(newPid, pid);
    assert.not.ok(gone, 'run.sh still runs');
  } finally {
    spawnSync('scripts/stop.sh', [], { cwd: repoRoot, env, stdio: 'ignore', timeout: 120_000 });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (!gone) run.kill('SIGKILL');
  }
  assert.ok(gone, 'stop.sh stopped run.sh');
  assert.not.ok(await listening(ports.XMPP_PORT), 'ejabberd stopped');
  assert.not.ok(await listening(ports.SIDECAR_PORT), 'the sidecar stopped');
  fs.rmSync(runDir, { recursive: true, force: true });
});

test.run();
