import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { sha256Hex } from '../../src/domain/config-schema.js';
import { runConsultctl } from '../support/consultctl.js';
import { startSidecar, writeConfig, type SidecarProcess } from '../support/sidecar.js';

const D = 'audit-e2e.test';
const SHOP = `shop@${D}`;
const ANN = `ann@${D}`;
const READ = 'e2e-dashboard-read-token';
const OPERATOR = 'e2e-front-desk-operator-token';
const ADMIN = 'e2e-the-boss-admin-token';

const ctl = runConsultctl;

type Entry = { token: string; role: string; route: string; status: number; target: object; before?: unknown; after?: unknown };

test('consultctl: an operator changes a status, a read token is refused a shop change; the audit log shows both, after a restart too', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-audit-'));
  const tokenFile = path.join(dir, 'desk.token');
  fs.writeFileSync(tokenFile, `${OPERATOR}\n`);
  const [grpcPort, adminPort] = await Promise.all([freePort(), freePort()]);
  const config = writeConfig({
    store: `pglite:${path.join(dir, 'db')}`,
    admin: {
      port: adminPort,
      tokens: [
        { name: 'dash', role: 'read', token: READ },
        { name: 'desk', role: 'operator', tokenFile },
        { name: 'boss', role: 'admin', sha256: sha256Hex(ADMIN) },
      ],
    },
    shops: [{ jid: SHOP, name: 'Audited', agents: [{ jid: ANN, maxSessions: 2 }] }],
  });
  const url = `http://127.0.0.1:${adminPort}`;
  let sidecar: SidecarProcess | undefined = startSidecar(config, grpcPort);
  try {
    await sidecar.waitForLog('admin API listening', 0, 60_000);

    const status = await ctl(url, OPERATOR, ['agent', 'status', ANN, 'dnd']);
    assert.is(status.code, 0, status.stderr);
    const refused = await ctl(url, READ, ['shop', 'set', SHOP, '--name', 'Renamed']);
    assert.equal(
      [refused.code, refused.stderr],
      [1, 'consultctl: 403 the token dash has the role read; PATCH /shops/{shop} needs the role admin'],
    );
    const shop = await ctl(url, READ, ['shop', SHOP]);
    assert.is(JSON.parse(shop.stdout).name, 'Audited');
    // The log itself is the admin's.
    assert.is((await ctl(url, OPERATOR, ['audit'])).code, 1);

    const expected = [
      ['dash', 'read', 'PATCH /shops/{shop}', 403, { shop: SHOP }, undefined, undefined],
      [
        'desk',
        'operator',
        'PUT /agents/{agent}/status',
        200,
        { agent: ANN },
        { agent: ANN, status: 'standard' },
        { agent: ANN, status: 'dnd' },
      ],
    ];
    const audit = async (args: string[] = []) => {
      const r = await ctl(url, ADMIN, ['audit', ...args]);
      assert.is(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as Entry[]).map((e) => [e.token, e.role, e.route, e.status, e.target, e.before, e.after]);
    };
    assert.equal(await audit(), expected);
    assert.equal(await audit(['--by', 'desk']), [expected[1]]);
    assert.equal(await audit(['--limit', '1']), [expected[0]]);

    // The log names the tokens and their roles, never a secret.
    const log = sidecar.lines.join('\n');
    assert.match(log, /"tokens":\["dash \(read\)","desk \(operator\)","boss \(admin\)"\]/);
    for (const secret of [READ, OPERATOR, ADMIN]) assert.not.ok(log.includes(secret), 'a token in the log');

    // Durable: a new process on the same store has the same log.
    await sidecar.kill('SIGTERM');
    sidecar = startSidecar(config, grpcPort);
    await sidecar.waitForLog('admin API listening', 0, 60_000);
    assert.equal(await audit([`--target`, ANN]), [expected[1]]);
  } finally {
    await sidecar?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
