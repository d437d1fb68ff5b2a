// Two sidecars, each with its admin API, on one PostgreSQL: a shop's sessions and queue are read and
// changed only through the sidecar that decides it. The other answers 421 (Misdirected Request), a problem
// naming the sidecar that holds the shop's lease (and its admin API when known); GET /shops/<jid> says where it is decided.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { leaseOwners, startAdminServer } from '../../../src/admin/http.js';
import { preferredOwner } from '../../../src/cluster/leases.js';
import { parseConfig } from '../../../src/domain/config.js';
import { silent } from '../../../src/domain/log.js';
import { Backends, adminParts, deskWorld, type World } from '../../support/desk.js';
import { ApiContract } from '../../support/openapi.js';

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

async function adminOf(w: World, adminUrlOf?: (sidecar: string) => string | undefined) {
  const admin = await startAdminServer(
    {
      ...adminParts(w),
      ...(adminUrlOf ? { owners: leaseOwners(w.leases, adminUrlOf) } : {}),
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
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type'), text, json: JSON.parse(text) };
  };
  return { api, url: `http://127.0.0.1:${admin.port}`, close: () => admin.close() };
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
  const owner = await adminOf(one);
  const elsewhere = await adminOf(other, (id) => (id === idOne ? owner.url : undefined));
  const unsure = await adminOf(other); // knows the owner's id, not where its admin API is
  try {
    assert.equal((await owner.api('GET', `/shops/${SHOP}`)).json.decidedHere, true);
    const shop = await elsewhere.api('GET', `/shops/${SHOP}`);
    assert.equal([shop.status, shop.json.decidedHere], [200, false], 'the shop itself is known to both: it says where it is decided');

    const contract = await ApiContract.of((await elsewhere.api('GET', '/openapi.json')).json);
    for (const [method, template, p, body] of [
      ['GET', '/sessions', `/sessions?shop=${SHOP}`],
      ['GET', '/queue', `/queue?shop=${SHOP}`],
      ['POST', '/sessions/close', '/sessions/close', { shop: SHOP, visitor: a('v1') }],
      ['POST', '/sessions/transfer', '/sessions/transfer', { shop: SHOP, visitor: a('v1'), to: a('bob') }],
      ['DELETE', '/shops/{shop}', `/shops/${SHOP}`],
    ] as [string, string, string, unknown?][]) {
      const r = await elsewhere.api(method, p, body);
      assert.equal(contract.check(method, template, r), [], `${method} ${p}: the 421 is the documented problem`);
      assert.equal(
        [r.status, r.type, r.json],
        [
          421,
          'application/problem+json',
          {
            type: 'urn:consult:problem:not-decided-here',
            title: 'Another sidecar decides this shop',
            status: 421,
            detail: `${SHOP} is decided by the sidecar ${idOne}; send this request to its admin API at ${owner.url}`,
            owner: { sidecar: idOne, adminUrl: owner.url },
          },
        ],
        `${method} ${p}`,
      );
      const bare = await unsure.api(method, p, body);
      assert.equal([bare.status, bare.json.owner], [421, { sidecar: idOne }], `${method} ${p} without the owner's admin URL`);
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
    await unsure.close();
  }
});

two.run();
