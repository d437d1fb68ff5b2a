// The real sidecar's settings: a YAML config, CONSULT_* variables over the file and flags over the variables, a
// wrong argument, variable or key stopping the start with one line that names it (exit 2), a config without shops,
// and a store that already has shops winning over a config that differs (one warning line saying so).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { writeConfig } from '../support/sidecar.js';
import { type SidecarOutput, spawnSidecarArgs } from '../support/sidecar-process.js';
import { waitUntil, within } from '../support/wait.js';

const D = 'settings.test';
const TOKEN = 'settings-test-admin-token';
const shopYaml = (welcome: string) => `# the shop of this test
shops:
  - jid: shop@${D}
    name: Settings
    welcome: ${welcome}
    agents:
      - jid: ann@${D}
        maxSessions: 2
`;
const yamlFile = (text: string) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'consult-yaml-')), 'consult.yaml');
  fs.writeFileSync(file, text);
  return file;
};
type Line = { level: number; msg: string; [k: string]: unknown };
const jsonLines = (s: SidecarOutput): Line[] =>
  s
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

/** Runs a start that must be refused: its exit and its stderr. */
async function refusedStart(args: string[], env: Record<string, string> = {}) {
  const s = spawnSidecarArgs(args, env);
  try {
    const exit = await within(s.exited, 20_000, `the refused start (${args.join(' ')}) to exit`);
    return { code: exit.code, stderr: s.stderr().trim(), all: s.all() };
  } finally {
    s.child.kill('SIGKILL');
  }
}

test('a wrong flag, variable, key or config path stops the start: exit 2 and one line naming it', async () => {
  const config = writeConfig({ store: 'memory:', shops: [] });
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['--config', config, '--grpc-port', 'abc'], {}, /^consult-router: --grpc-port: grpc\.port must be an integer in 0\.\.65535$/],
    [
      ['--config', config],
      { CONSULT_GRPC_PORT: 'abc' },
      /^consult-router: CONSULT_GRPC_PORT: grpc\.port must be an integer in 0\.\.65535$/,
    ],
    [['--config', config, '--log-level', 'loud'], {}, /^consult-router: --log-level: logLevel must be one of fatal, error/],
    [
      ['--config', writeConfig({ timerz: { tickSec: 1 }, admin: { tokn: TOKEN } })],
      {},
      /^consult-router: config: admin\.tokn is not a known key \(did you mean token\?\); config: timerz is not a known key \(did you mean timers\?\)$/,
    ],
    [[], { CONSULT_CONFIG: '/nonexistent/consult.yaml' }, /^consult-router: CONSULT_CONFIG: cannot read \/nonexistent\/consult\.yaml/],
    [['--config', yamlFile('grpc:\n  port: 99999\n')], {}, /^consult-router: config: grpc\.port must be an integer in 0\.\.65535$/],
  ];
  for (const [args, env, message] of cases) {
    const r = await refusedStart(args, env);
    assert.is(r.code, 2, `${args.join(' ')} ${JSON.stringify(env)}\n${r.all}`);
    assert.is(r.stderr.split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.not.match(r.all, /sidecar listening/);
  }
});

test('YAML config; the environment over the file and a flag over the environment; the store then wins over a changed config', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-settings-'));
  const [fileGrpc, envGrpc, flagGrpc, fileAdmin, envAdmin] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const config = yamlFile(`grpc:\n  port: ${fileGrpc}\nadmin:\n  port: ${fileAdmin}\nstore: "memory:"\n${shopYaml('Hello from YAML')}`);
  const env = {
    CONSULT_STORE: `pglite:${dir}`,
    CONSULT_GRPC_PORT: String(envGrpc),
    CONSULT_ADMIN_PORT: String(envAdmin),
    CONSULT_ADMIN_TOKEN: TOKEN,
    CONSULT_SIDECAR_ID: 'east-7',
  };
  const shopWelcome = async () => {
    const res = await fetch(`http://127.0.0.1:${envAdmin}/shops/shop@${D}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return res.ok ? ((await res.json()) as { welcome: string }).welcome : undefined;
  };
  const stop = async (s: SidecarOutput) => {
    s.child.kill('SIGTERM');
    assert.is((await within(s.exited, 20_000, 'the exit after SIGTERM')).code, 0, s.all());
  };
  try {
    const first = spawnSidecarArgs(['--config', config, '--grpc-port', String(flagGrpc)], env);
    try {
      await waitUntil('the admin API', () => first.all().includes('admin API listening'), { timeoutMs: 60_000, detail: first.all });
      const lines = jsonLines(first);
      const listening = lines.find((l) => l.msg === 'sidecar listening');
      assert.is(listening?.grpc, `127.0.0.1:${flagGrpc}`, 'the flag wins over CONSULT_GRPC_PORT and the file');
      assert.is(listening?.store, `pglite:${dir}`, 'CONSULT_STORE');
      assert.is(lines.find((l) => l.msg === 'admin API listening')?.admin, `http://127.0.0.1:${envAdmin}`, 'CONSULT_ADMIN_PORT');
      assert.ok(lines.some((l) => l.msg === 'store seeded from config'));
      assert.is(await shopWelcome(), 'Hello from YAML', 'seeded from the YAML file; CONSULT_ADMIN_TOKEN is the token');
      await waitUntil('deciding shops', () => jsonLines(first).find((l) => l.msg === 'deciding shops'), { timeoutMs: 30_000 });
      assert.is(jsonLines(first).find((l) => l.msg === 'deciding shops')?.sidecar, 'east-7', 'CONSULT_SIDECAR_ID');
    } finally {
      await stop(first);
    }

    // The same store, the config's shop changed, warnings only.
    fs.writeFileSync(config, `store: "memory:"\n${shopYaml('Changed in the file')}`);
    const second = spawnSidecarArgs(['--config', config, '--grpc-port', String(flagGrpc)], { ...env, CONSULT_LOG_LEVEL: 'warn' });
    try {
      await waitUntil('the admin API', shopWelcome, { timeoutMs: 60_000, detail: second.all });
      assert.is(await shopWelcome(), 'Hello from YAML', "the store's shop, not the config's");
      const lines = jsonLines(second);
      const told = lines.filter((l) => l.msg.includes("the store already has shops, and they win over the config's"));
      assert.is(told.length, 1, second.all());
      assert.match(told[0]!.msg, /`consultctl import <config>` applies a config to the store/);
      assert.ok(lines.length > 0 && lines.every((l) => l.level >= 40), `CONSULT_LOG_LEVEL=warn: no info lines\n${second.stdout()}`);
    } finally {
      await stop(second);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a config without shops starts (the store would have them)', async () => {
  const adminPort = await freePort();
  const s = spawnSidecarArgs([
    '--config',
    writeConfig({ admin: { port: adminPort, token: TOKEN } }),
    '--grpc-port',
    String(await freePort()),
  ]);
  try {
    await waitUntil('sidecar listening', () => s.all().includes('sidecar listening'), { timeoutMs: 30_000, detail: s.all });
    const shops = await fetch(`http://127.0.0.1:${adminPort}/shops`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) =>
      r.json(),
    );
    assert.equal(shops, []);
  } finally {
    s.child.kill('SIGTERM');
    await s.exited;
  }
});

test.run();
