// A shop's own webhook set through the admin API (PUT/GET/DELETE /shops/{shop}/events), on a real admin server over a
// desk (memory and PGlite) and a real HTTP receiver: effective without a restart, the secret write-only (never in an
// answer, GET /shops, or the audit log), kept when left out, off on request, stored across a restart.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type AdminDeps, startAdminServer } from '../../../src/admin/http.js';
import { postEvent } from '../../../src/bot/event-hook.js';
import { silent } from '../../../src/domain/log.js';
import { MemoryAudit } from '../../../src/storage/memory-audit.js';
import { type Backend, Backends, adminParts, deskWorld } from '../../support/desk.js';
import { EventReceiver } from '../../support/event-receiver.js';
import { oneShopConfig } from '../../support/one-shop.js';
import { waitUntil } from '../../support/wait.js';

const D = 'hook.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const TOKEN = 'the-webhook-test-admin-token';
const SECRET = 'the-shop-webhook-secret-0123';
const backends = new Backends();

async function world(backend: Backend, receiver: EventReceiver) {
  const config = oneShopConfig(D, { agents: { ann: 2 } }); // no events in the config
  const w = await deskWorld({ backend, backends, config, clock: Date.now(), postEvent });
  const audit = new MemoryAudit();
  const deps: AdminDeps = { ...adminParts(w), audit, token: TOKEN, log: silent, defaultLimits: config.limits };
  const admin = await startAdminServer(deps, '127.0.0.1', 0);
  const call = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${admin.port}${p}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
  };
  const says = (visitor: string, id: string) =>
    w.filter(`<message type='consult' from='${a(visitor)}/web' to='${SHOP}'><body id='${id}' msgType='1'>hello</body></message>`);
  return { w, admin, call, audit, says, receiver };
}

for (const backend of ['memory', 'pglite'] as Backend[]) {
  const t = suite(`a shop's own webhook through the admin API [${backend}]`);

  t('set, effective at once, secret write-only and kept, off, removed; stored across a restart', async () => {
    const receiver = new EventReceiver(SECRET);
    await receiver.start();
    const { w, admin, call, audit, says } = await world(backend, receiver);
    try {
      assert.equal((await call('GET', `/shops/${SHOP}/events`)).json, {
        shop: SHOP,
        source: 'none',
        own: null,
        url: null,
        messages: false,
        timeoutMs: null,
        secretSet: false,
      });
      const noSecret = await call('PUT', `/shops/${SHOP}/events`, { url: receiver.url });
      assert.is(noSecret.status, 400);
      assert.equal(
        noSecret.json.errors.map((e: { field: string }) => e.field),
        ['secret'],
      );
      assert.is((await call('PUT', `/shops/${SHOP}/events`, { off: true, url: receiver.url })).status, 400);
      assert.is((await call('PUT', `/shops/${a('nope')}/events`, { off: true })).status, 404);

      const set = await call('PUT', `/shops/${SHOP}/events`, { url: receiver.url, secret: SECRET, messages: true });
      assert.is(set.status, 200, set.text);
      assert.equal(set.json, {
        shop: SHOP,
        source: 'shop',
        own: { url: receiver.url, messages: true, secretSet: true },
        url: receiver.url,
        messages: true,
        timeoutMs: 5000,
        secretSet: true,
      });
      await w.online(a('ann'));
      await says('v1', 'm1');
      // Without a restart: the events of this session reach the endpoint just set, signed with its secret.
      await waitUntil('the new endpoint has the session’s events', () => receiver.accepted.length === 3);
      assert.equal(
        receiver.accepted.map((r) => r.body.type),
        ['session.opened', 'session.assigned', 'message'],
      );
      assert.ok(
        receiver.accepted.every((r) => r.signed),
        'every signature valid',
      );

      const shop = await call('GET', `/shops/${SHOP}`);
      assert.equal(shop.json.events, { url: receiver.url, messages: true, secretSet: true });
      for (const r of [set, shop, await call('GET', '/shops'), await call('GET', `/shops/${SHOP}/events`)])
        assert.not.ok(r.text.includes(SECRET), 'the secret is never answered');

      // Left out, the secret stays: the next events are still signed with it.
      const moved = await call('PUT', `/shops/${SHOP}/events`, { url: receiver.url, timeoutMs: 2000 });
      assert.equal(
        [moved.status, moved.json.own, moved.json.messages],
        [200, { url: receiver.url, timeoutMs: 2000, secretSet: true }, false],
      );
      await says('v2', 'm2');
      await waitUntil('v2’s events', () => receiver.accepted.length === 5);
      assert.ok(
        receiver.accepted.every((r) => r.signed),
        'signed with the secret kept',
      );

      // A whole-shop PUT leaves the webhook as it is (a resource of its own).
      assert.is((await call('PUT', `/shops/${SHOP}`, { name: 'Shop One' })).status, 200);
      assert.equal(w.directory.shop(SHOP)!.events, { url: receiver.url, secret: SECRET, timeoutMs: 2000 });

      const off = await call('PUT', `/shops/${SHOP}/events`, { off: true });
      assert.equal([off.json.source, off.json.own, off.json.url], ['none', false, null]);
      await says('v3', 'm3');
      assert.is(w.desk.shops.state(SHOP)!.outbox.size, 0, 'no events made while off');

      // The audit log has before and after of each change, and never the secret (the request's is redacted).
      const log = (await audit.search({ limit: 100 })).reverse();
      const puts = log.filter((e) => e.route === 'PUT /shops/{shop}/events' && e.status === 200);
      assert.is(puts.length, 3);
      assert.equal((puts[0].request as Record<string, unknown>).secret, '[redacted]');
      assert.equal((puts[0].before as { source: string }).source, 'none');
      assert.equal((puts[0].after as { source: string }).source, 'shop');
      assert.not.ok(JSON.stringify(log).includes(SECRET), 'the secret is not in the audit log');

      // Stored: a restarted sidecar reads it from the store.
      await call('PUT', `/shops/${SHOP}/events`, { url: receiver.url, secret: SECRET });
      await w.restart();
      assert.equal(w.directory.shop(SHOP)!.events, { url: receiver.url, secret: SECRET });
      assert.is(w.desk.sender.hookOf(SHOP)?.url, receiver.url);
    } finally {
      w.desk.sender.close();
      await admin.close();
      await receiver.close();
    }
  });

  t('DELETE goes back to the config’s events; a shop without its own is 404', async () => {
    const receiver = new EventReceiver(SECRET);
    await receiver.start();
    const { w, admin, call } = await world(backend, receiver);
    try {
      assert.is((await call('DELETE', `/shops/${SHOP}/events`)).status, 404);
      await call('PUT', `/shops/${SHOP}/events`, { off: true });
      const gone = await call('DELETE', `/shops/${SHOP}/events`);
      assert.equal([gone.status, gone.json], [200, { deleted: 'events', shop: SHOP }]);
      assert.equal((await call('GET', `/shops/${SHOP}/events`)).json.own, null);
      assert.not.ok('events' in w.directory.shop(SHOP)!);
    } finally {
      w.desk.sender.close();
      await admin.close();
      await receiver.close();
    }
  });

  t.run();
}

const teardown = suite('teardown');
teardown('close backends', async () => {
  await backends.close();
});
teardown.run();
