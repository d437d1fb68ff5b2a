// Two sidecars, each with its admin API, on one PostgreSQL: a shop's sessions and queue are read and
// changed only through the sidecar that decides it. The other answers 421 (Misdirected Request),
// saying the shop is decided by another sidecar; GET /shops/<jid> says where it is decided.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startAdminServer } from '../../../src/admin/http.js';
import { preferredOwner } from '../../../src/cluster/leases.js';
import { parseConfig } from '../../../src/domain/config.js';
import { silent } from '../../../src/domain/log.js';
import { Backends, adminParts, deskWorld, type World } from '../../support/desk.js';

const D = 'two.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const TOKEN = 'admin-token-of-both';
const backends = new Backends();

const config = parseConfig({
  shops: [
    {
      jid: SHOP,
      name: 'S',
      agents: [
        { jid: a('ann'), maxSessions: 5, status: 'always-on' },
        { jid: a('bob'), maxSessions: 5, status: 'always-on' },
      ],
    },
  ],
});

/** Sidecar ids such that the first is the shop's preferred owner: the second never asks for it. */
function ids(): [string, string] {
  for (let i = 0; ; i++) {
    const pair: [string, string] = [`one-${i}`, `two-${i}`];
    if (preferredOwner(SHOP, pair) === pair[0]) return pair;
  }
}

async function adminOf(w: World) {
  const admin = await startAdminServer(
    {
      ...adminParts(w),
      token: TOKEN,
      log: silent,
      defaultLimits: config.limits,
    },
    '127.0.0.1',
    0,
  );
  const api = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${admin.port}${p}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };
  return { api, close: () => admin.close() };
}

const two = suite('admin API of a sidecar that does not decide the shop [postgres]');
two.after(() => backends.close());

two('421 naming the other sidecar for its sessions, queue, close, transfer and delete; the owner answers them', async () => {
  const [idOne, idTwo] = ids();
  const one = await deskWorld({ backend: 'postgres', backends, config, stores: { sidecar: idOne } });
  const other = await deskWorld({ backend: 'postgres', backends, config, stores: { sidecar: idTwo, join: true } });
  assert.ok(one.desk.shops.owns(SHOP), 'the first holds the lease');
  assert.not.ok(other.desk.shops.owns(SHOP), "the second leaves it: the first's lease is valid");
  await one.filter(`<message type='consult' from='${a('v1')}/web' to='${SHOP}'><body id='m1'>hi</body></message>`);
  const [owner, elsewhere] = [await adminOf(one), await adminOf(other)];
  try {
    assert.equal((await owner.api('GET', `/shops/${SHOP}`)).json.decidedHere, true);
    const shop = await elsewhere.api('GET', `/shops/${SHOP}`);
    assert.equal([shop.status, shop.json.decidedHere], [200, false], 'the shop itself is known to both: it says where it is decided');

    const decidedElsewhere = `${SHOP} is decided by another consult sidecar right now; please send again`;
    for (const [method, p, body] of [
      ['GET', `/sessions?shop=${SHOP}`],
      ['GET', `/queue?shop=${SHOP}`],
      ['POST', '/sessions/close', { shop: SHOP, visitor: a('v1') }],
      ['POST', '/sessions/transfer', { shop: SHOP, visitor: a('v1'), to: a('bob') }],
      ['DELETE', `/shops/${SHOP}`],
    ] as [string, string, unknown?][]) {
      const r = await elsewhere.api(method, p, body);
      assert.equal([r.status, r.json.error], [421, decidedElsewhere], `${method} ${p}`);
    }

    const sessions = await owner.api('GET', `/sessions?shop=${SHOP}`);
    assert.equal(
      [sessions.status, sessions.json.map((s: { visitor: string }) => s.visitor)],
      [200, [a('v1')]],
      'the owner has the session the other refused to touch',
    );
    assert.is((await owner.api('POST', '/sessions/close', { shop: SHOP, visitor: a('v1') })).status, 200);
    assert.equal((await owner.api('GET', `/sessions?shop=${SHOP}`)).json, []);
  } finally {
    await owner.close();
    await elsewhere.close();
  }
});

two.run();
