// Named admin tokens with roles, and the audit log, against a real admin server on loopback (a Desk on the memory
// store, or PGlite where the audit log must fail for real): a read token is refused every change with a 403 problem
// and changes nothing; an operator does the day's work but not shop changes; every audited route of the table (a
// route added later included) leaves an entry naming the token, with the status; before and after of the shop,
// membership, group and status routes; secrets redacted; a log that cannot be written refuses the change (503).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type AdminDeps, adminRoutes, startAdminServer } from '../../../src/admin/http.js';
import { isAudited } from '../../../src/admin/routes.js';
import { sha256Hex } from '../../../src/domain/config-schema.js';
import { redact, targetValues } from '../../../src/domain/audit.js';
import { silent } from '../../../src/domain/log.js';
import { pgliteDriver } from '../../../src/storage/driver.js';
import { MemoryAudit } from '../../../src/storage/memory-audit.js';
import { SqlAudit } from '../../../src/storage/sql-audit.js';
import { Backends, adminParts, deskWorld } from '../../support/desk.js';
import { oneShopConfig } from '../../support/one-shop.js';

const D = 'audit.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const READ = 'the-dashboard-read-token';
const OPERATOR = 'the-front-desk-operator-token';
const ADMIN = 'the-boss-admin-token-secret';
const HASHED = 'a-token-given-only-by-its-hash';

async function world(extra: Partial<AdminDeps> = {}) {
  const config = oneShopConfig(D, { agents: { ann: 2, bob: 1 } });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const audit = new MemoryAudit();
  const deps: AdminDeps = {
    ...adminParts(w),
    audit,
    tokens: [
      { name: 'dash', role: 'read', token: READ },
      { name: 'desk', role: 'operator', token: OPERATOR },
      { name: 'boss', role: 'admin', token: ADMIN },
      { name: 'hashed', role: 'operator', sha256: sha256Hex(HASHED) },
    ],
    log: silent,
    defaultLimits: config.limits,
    ...extra,
  };
  const admin = await startAdminServer(deps, '127.0.0.1', 0);
  const url = `http://127.0.0.1:${admin.port}`;
  const call = async (token: string, method: string, p: string, body?: unknown) => {
    const res = await fetch(url + p, {
      method,
      headers: { authorization: `Bearer ${token}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type'), json: text ? JSON.parse(text) : undefined };
  };
  const entries = async () => (await audit.search({ limit: 1000 })).reverse(); // oldest first
  return { w, deps, admin, call, audit, entries };
}

const withWorld = (name: string, fn: (x: Awaited<ReturnType<typeof world>>) => Promise<void>) =>
  test(name, async () => {
    const x = await world();
    try {
      await fn(x);
    } finally {
      await x.admin.close();
    }
  });

withWorld(
  'a read token reads, and is refused every change with a 403 problem that changes nothing (and is audited)',
  async ({ call, entries }) => {
    assert.is((await call(READ, 'GET', '/shops')).status, 200);
    const before = (await call(ADMIN, 'GET', `/shops/${SHOP}`)).json;
    const r = await call(READ, 'PATCH', `/shops/${SHOP}`, { name: 'Renamed' });
    assert.equal([r.status, r.type], [403, 'application/problem+json']);
    assert.equal(r.json, {
      type: 'urn:consult:problem:forbidden',
      title: 'The token’s role does not allow this',
      status: 403,
      detail: 'the token dash has the role read; PATCH /shops/{shop} needs the role admin',
    });
    assert.equal((await call(ADMIN, 'GET', `/shops/${SHOP}`)).json, before);
    const close = await call(READ, 'POST', '/sessions/close', { shop: SHOP, visitor: a('v1') });
    assert.equal(
      [close.status, close.json.detail],
      [403, 'the token dash has the role read; POST /sessions/close needs the role operator or admin'],
    );
    assert.equal(
      (await entries()).map((e) => [e.token, e.role, e.route, e.status, e.after]),
      [
        ['dash', 'read', 'PATCH /shops/{shop}', 403, undefined],
        ['dash', 'read', 'POST /sessions/close', 403, undefined],
      ],
    );
    // A read is not audited; the audit log itself needs the admin role.
    assert.is((await call(READ, 'GET', '/audit')).status, 403);
    assert.is((await call(OPERATOR, 'GET', '/audit')).status, 403);
    assert.is((await call(ADMIN, 'GET', '/audit')).status, 200);
    assert.is((await entries()).length, 2);
  },
);

withWorld(
  'canned replies one at a time: an operator’s work, with the reply before and after in the audit log',
  async ({ call, entries }) => {
    const path = `/shops/${SHOP}/canned/refund`;
    assert.is((await call(READ, 'PUT', path, { text: 'no' })).status, 403);
    assert.is((await call(OPERATOR, 'PUT', path, { text: 'It is on its way, {visitor}.' })).status, 200);
    assert.is((await call(OPERATOR, 'PUT', path, { text: 'Refunded.' })).status, 200);
    assert.is((await call(OPERATOR, 'DELETE', path)).status, 200);
    assert.is((await call(OPERATOR, 'PATCH', `/shops/${SHOP}`, { canned: {} })).status, 403, 'the whole set with the shop: admin');
    const reply = (text: string) => ({ shop: SHOP, name: 'refund', text });
    assert.equal(
      (await entries()).map((e) => [e.token, e.route, e.status, e.before, e.after]),
      [
        ['dash', 'PUT /shops/{shop}/canned/{name}', 403, undefined, undefined],
        ['desk', 'PUT /shops/{shop}/canned/{name}', 200, null, reply('It is on its way, {visitor}.')],
        ['desk', 'PUT /shops/{shop}/canned/{name}', 200, reply('It is on its way, {visitor}.'), reply('Refunded.')],
        ['desk', 'DELETE /shops/{shop}/canned/{name}', 200, reply('Refunded.'), null],
        ['desk', 'PATCH /shops/{shop}', 403, undefined, undefined],
      ],
    );
  },
);

withWorld(
  'an operator closes, transfers and sets statuses, but cannot change a shop; a hashed token works',
  async ({ w, call, entries }) => {
    await w.online(a('ann'));
    await w.online(a('bob'));
    await w.filter(`<message type='consult' from='${a('v1')}/web' to='${SHOP}'><body id='m1'>hi</body></message>`);
    const [session] = (await call(OPERATOR, 'GET', '/sessions')).json;
    const other = session.agent === a('ann') ? a('bob') : a('ann');
    assert.is((await call(OPERATOR, 'POST', '/sessions/transfer', { shop: SHOP, visitor: a('v1'), to: other })).status, 200);
    assert.is((await call(HASHED, 'PUT', `/agents/${a('bob')}/status`, { status: 'dnd' })).status, 200);
    assert.is((await call(OPERATOR, 'POST', '/sessions/close', { shop: SHOP, visitor: a('v1') })).status, 200);
    assert.is((await call(OPERATOR, 'PUT', `/shops/${SHOP}/agents/${a('cat')}`, {})).status, 403);
    assert.is((await call('not-a-token-of-this-api', 'GET', '/shops')).status, 401);
    const log = await entries();
    assert.equal(
      log.map((e) => [e.token, e.route, e.status, e.target, e.before, e.after]),
      [
        [
          'desk',
          'POST /sessions/transfer',
          200,
          { shop: SHOP, agent: other, visitor: a('v1') },
          { shop: SHOP, visitor: a('v1'), agent: session.agent },
          { transferred: { shop: SHOP, visitor: a('v1'), to: other } },
        ],
        [
          'hashed',
          'PUT /agents/{agent}/status',
          200,
          { agent: a('bob') },
          { agent: a('bob'), status: 'standard' },
          { agent: a('bob'), status: 'dnd' },
        ],
        [
          'desk',
          'POST /sessions/close',
          200,
          { shop: SHOP, visitor: a('v1') },
          { shop: SHOP, visitor: a('v1'), agent: other },
          { closed: { shop: SHOP, visitor: a('v1') } },
        ],
        ['desk', 'PUT /shops/{shop}/agents/{agent}', 403, { shop: SHOP, agent: a('cat') }, undefined, undefined],
      ],
    );
    assert.equal(log[0].request, { shop: SHOP, visitor: a('v1'), to: other });
  },
);

withWorld('before and after of shops, memberships and groups; a refusal has no after; secrets are redacted', async ({ call, entries }) => {
  const two = a('two');
  assert.is((await call(ADMIN, 'PUT', `/shops/${two}`, { name: 'Two' })).status, 200);
  assert.is((await call(ADMIN, 'PATCH', `/shops/${two}`, { welcome: 'Hello' })).status, 200);
  assert.is((await call(ADMIN, 'PATCH', `/shops/${SHOP}/agents/${a('ann')}`, { maxSessions: 4 })).status, 200);
  assert.is((await call(ADMIN, 'PUT', `/shops/${SHOP}/groups/front`, { agents: [a('ann')] })).status, 200);
  assert.is((await call(ADMIN, 'DELETE', `/shops/${SHOP}/groups/front`)).status, 200);
  assert.is((await call(ADMIN, 'DELETE', `/shops/${SHOP}/agents/${a('bob')}`)).status, 200);
  assert.is((await call(ADMIN, 'PATCH', `/shops/${two}`, { limits: { queueMax: 0 } })).status, 400);
  assert.is((await call(ADMIN, 'DELETE', `/shops/${two}`)).status, 200);
  const log = await entries();
  const [put, patch, member, group, ungroup, unmember, invalid, removed] = log;
  assert.equal([put.before, (put.after as { name: string }).name], [null, 'Two']);
  assert.equal([(patch.before as { welcome: string }).welcome, (patch.after as { welcome: string }).welcome], ['Two', 'Hello']);
  assert.equal(
    [member.before, member.after],
    [
      { shop: SHOP, agent: a('ann'), maxSessions: 2 },
      { shop: SHOP, agent: a('ann'), maxSessions: 4 },
    ],
  );
  assert.equal([group.before, (group.after as { agents: string[] }).agents], [null, [a('ann')]]);
  assert.equal([(ungroup.before as { name: string }).name, ungroup.after], ['front', null]);
  assert.equal([unmember.before, unmember.after], [{ shop: SHOP, agent: a('bob'), maxSessions: 1 }, null]);
  assert.equal([invalid.status, invalid.after, invalid.detail], [400, undefined, 'limits.queueMax must be an integer in 1..1000000']);
  assert.equal([(removed.before as { welcome: string }).welcome, removed.after, removed.status], ['Hello', null, 200]);
  assert.ok(log.every((e) => e.token === 'boss' && e.role === 'admin'));
  assert.equal(redact({ bot: { url: 'http://x', secret: 's3', n: [{ apiToken: 't' }] }, password: null }), {
    bot: { url: 'http://x', secret: '[redacted]', n: [{ apiToken: '[redacted]' }] },
    password: null,
  });
});

withWorld(
  'every route of the table: each change is audited and needs more than read; each audited call leaves one entry',
  async ({ deps, call, entries }) => {
    const routes = adminRoutes(deps);
    for (const r of routes) {
      if (r.access === 'public') continue;
      assert.ok(r.role, `${r.method} ${r.path} has a role`);
      if (r.method !== 'GET') {
        assert.ok(isAudited(r), `${r.method} ${r.path} is audited`);
        assert.is.not(r.role, 'read', `${r.method} ${r.path} needs more than read`);
      }
    }
    const sample: Record<string, string> = { shop: SHOP, agent: a('ann'), group: 'front', jid: a('v1'), visitor: a('v1'), id: 'nope' };
    const fill = (p: string) => p.replace(/\{(\w+)\}/g, (_, n: string) => encodeURIComponent(sample[n] ?? 'x'));
    let seen = 0;
    for (const r of routes.filter(isAudited)) {
      for (const [token, name, role] of [
        [READ, 'dash', 'read'],
        [ADMIN, 'boss', 'admin'],
      ] as const) {
        const res = await call(token, r.method, fill(r.path), r.method === 'GET' ? undefined : {});
        const log = await entries();
        assert.is(log.length, ++seen, `${r.method} ${r.path}: one entry more`);
        const last = log[log.length - 1];
        assert.equal(
          [last.token, last.role, last.route, last.path, last.status],
          [name, role, `${r.method} ${r.path}`, fill(r.path), res.status],
          `${r.method} ${r.path} by ${name}`,
        );
        if (r.role !== 'read' && token === READ) assert.is(res.status, 403, `${r.method} ${r.path} refused to the read token`);
        // The JIDs and group of the path are the entry's target (GET /audit?target= finds them).
        for (const [, param] of r.path.matchAll(/\{(\w+)\}/g))
          if (param !== 'name' && param !== 'id')
            assert.ok(
              targetValues(last.target).includes(sample[param]!),
              `${r.method} ${r.path}: ${param} in the target ${JSON.stringify(last.target)}`,
            );
      }
    }
    assert.ok(seen >= 2 * 14, `${seen} audited calls`);
  },
);

withWorld('GET /audit pages newest first with a cursor and a Link, filters by token, target and time', async ({ call }) => {
  for (const n of [1, 2, 3]) await call(ADMIN, 'PUT', `/shops/${SHOP}/agents/${a(`m${n}`)}`, {});
  await call(OPERATOR, 'PUT', `/agents/${a('m1')}/status`, { status: 'dnd' });
  const first = await call(ADMIN, 'GET', '/audit?limit=3');
  assert.equal(
    first.json.items.map((e: { token: string; target: { agent: string } }) => [e.token, e.target.agent]),
    [
      ['desk', a('m1')],
      ['boss', a('m3')],
      ['boss', a('m2')],
    ],
  );
  const second = await call(ADMIN, 'GET', `/audit?limit=3&cursor=${first.json.next}`);
  assert.equal([second.json.items.map((e: { target: { agent: string } }) => e.target.agent), second.json.next], [[a('m1')], null]);
  assert.is((await call(ADMIN, 'GET', '/audit?token=desk')).json.items.length, 1);
  assert.is((await call(ADMIN, 'GET', `/audit?target=${a('m2')}`)).json.items.length, 1);
  assert.is((await call(ADMIN, 'GET', `/audit?target=${SHOP}`)).json.items.length, 3);
  assert.is((await call(ADMIN, 'GET', '/audit?from=2000-01-01T00:00:00Z&to=2001-01-01')).json.items.length, 0);
  const bad = await call(ADMIN, 'GET', '/audit?cursor=not-ours');
  assert.equal([bad.status, bad.json.errors[0].field], [400, 'cursor']);
});

test('an audit log that cannot be written refuses the change with 503, and nothing is changed', async () => {
  const db = await pgliteDriver();
  const audit = new SqlAudit(db);
  await db.close(); // every write now fails, for real
  const { call, admin } = await world({ audit });
  try {
    const before = (await call(ADMIN, 'GET', `/shops/${SHOP}`)).json;
    const r = await call(ADMIN, 'PATCH', `/shops/${SHOP}`, { name: 'Not made' });
    assert.equal([r.status, r.json.type], [503, 'urn:consult:problem:audit-unavailable']);
    assert.equal((await call(ADMIN, 'GET', `/shops/${SHOP}`)).json, before);
    assert.is((await call(READ, 'GET', '/shops')).status, 200); // reads go on
  } finally {
    await admin.close();
  }
});

test.run();
