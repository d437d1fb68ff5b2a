// The admin API's OpenAPI document against the API itself, on a real admin server (memory store): the document is
// served without a token and is valid OpenAPI 3.1, it has exactly the routes the router dispatches, and every answer
// of every route (successes and problems) has the status, media type and body schema the document gives.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRoutes, startAdminServer } from '../../../src/admin/http.js';
import { Metrics } from '../../../src/admin/metrics.js';
import { silent } from '../../../src/domain/log.js';
import { Backends, adminParts, deskWorld } from '../../support/desk.js';
import { oneShopConfig } from '../../support/one-shop.js';
import { type Answer, ApiContract } from '../../support/openapi.js';

const D = 'doc.test';
const SHOP = `shop_1@${D}`;
const a = (n: string) => `${n}@${D}`;
const TOKEN = 'the-documented-admin-token';
const READ_TOKEN = 'the-documented-read-token';

async function world() {
  const config = oneShopConfig(D, { agents: { ann: 2, bob: 1 } });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const metrics = new Metrics();
  metrics.watch({ desk: w.desk, directory: w.directory, link: w.link });
  const deps = {
    ...adminParts(w),
    metrics,
    token: TOKEN,
    tokens: [{ name: 'dash', role: 'read' as const, token: READ_TOKEN }],
    log: silent,
    defaultLimits: config.limits,
    // Few failures allowed, so that the 429 is reached too.
    authFailures: { max: 2, windowMs: 60_000 },
  };
  const admin = await startAdminServer(deps, '127.0.0.1', 0);
  const url = `http://127.0.0.1:${admin.port}`;
  /** One call, its template named so that the answer is checked against that operation. */
  const call = async (method: string, p: string, body?: unknown, token: string | null = TOKEN) => {
    const res = await fetch(url + p, {
      method,
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, type: res.headers.get('content-type'), headers: res.headers, text: await res.text() };
  };
  return { w, deps, admin, call };
}

test('GET /openapi.json needs no token and is a valid OpenAPI 3.1 document', async () => {
  const { admin, call } = await world();
  try {
    const r = await call('GET', '/openapi.json', undefined, null);
    assert.equal([r.status, r.type], [200, 'application/json']);
    const doc = JSON.parse(r.text);
    assert.is(doc.openapi.slice(0, 4), '3.1.');
    await ApiContract.of(doc); // throws with the validator's errors
  } finally {
    await admin.close();
  }
});

test('the document has every route the router dispatches, and no other', async () => {
  const { deps, admin, call } = await world();
  try {
    const contract = await ApiContract.of(JSON.parse((await call('GET', '/openapi.json', undefined, null)).text));
    const table = adminRoutes(deps).map((r) => `${r.method} ${r.path}`);
    assert.equal(contract.operations().sort(), [...table].sort());
    assert.ok(table.length >= 20, `${table.length} routes`);
    for (const r of adminRoutes(deps)) {
      const op = contract.document.paths[r.path][r.method.toLowerCase()];
      assert.equal(op.security, r.access === 'admin' ? [{ bearer: [] }] : [], `${r.method} ${r.path}: its token requirement`);
    }
  } finally {
    await admin.close();
  }
});

test('every answer of every route is what the document says: status, media type, body', async () => {
  const { w, admin, call } = await world();
  const contract = await ApiContract.of(JSON.parse((await call('GET', '/openapi.json', undefined, null)).text));
  const answered = new Map<string, Set<number>>();
  const problems: string[] = [];
  const check = (method: string, template: string, r: Answer) => {
    problems.push(...contract.check(method, template, r));
    const key = `${method} ${template}`;
    answered.set(key, (answered.get(key) ?? new Set()).add(r.status));
  };
  /** Calls `p` as the operation `method template` and checks the answer; `status` is the one the test expects. */
  const op = async (method: string, template: string, p: string, status: number, body?: unknown, token: string | null = TOKEN) => {
    const r = await call(method, p, body, token);
    check(method, template, r);
    assert.is(r.status, status, `${method} ${p}: ${r.text.slice(0, 300)}`);
    return r;
  };
  const json = (r: { text: string }) => JSON.parse(r.text);
  try {
    await op('GET', '/openapi.json', '/openapi.json', 200, undefined, null);
    await op('GET', '/metrics', '/metrics', 200, undefined, null);
    await op('GET', '/shops', '/shops', 200);

    await op('GET', '/shops/{shop}', `/shops/${SHOP}`, 200);
    await op('GET', '/shops/{shop}', `/shops/${a('nope')}`, 404);
    await op('GET', '/shops/{shop}', '/shops/not-a-jid', 400);
    await op('PUT', '/shops/{shop}', `/shops/${a('two')}`, 200, { name: 'Two', texts: { statusSet: 'Now {status}.' } });
    await op('PUT', '/shops/{shop}', `/shops/${a('two')}`, 400, { welcome: 'no name' });
    await op('PUT', '/shops/{shop}', `/shops/${a('ann')}`, 409, { name: 'An agent' });
    await op('PATCH', '/shops/{shop}', `/shops/${a('two')}`, 200, {
      welcome: 'Hi',
      bot: { mode: 'human-first', url: 'http://127.0.0.1:9/b' },
    });
    await op('PATCH', '/shops/{shop}', `/shops/${a('two')}`, 400, { limits: { queueMax: 0 }, strategy: 'fastest' });
    await op('PATCH', '/shops/{shop}', `/shops/${a('two')}`, 400, '{not json');

    await op('PUT', '/shops/{shop}/agents/{agent}', `/shops/${SHOP}/agents/${a('cat')}`, 200, { maxSessions: 2 });
    await op('PUT', '/shops/{shop}/agents/{agent}', `/shops/${a('nope')}/agents/${a('cat')}`, 404, {});
    await op('PUT', '/shops/{shop}/agents/{agent}', `/shops/${SHOP}/agents/${a('two')}`, 409, {});
    await op('PATCH', '/shops/{shop}/agents/{agent}', `/shops/${SHOP}/agents/${a('cat')}`, 200, {});
    await op('PATCH', '/shops/{shop}/agents/{agent}', `/shops/${SHOP}/agents/${a('cat')}`, 400, { maxSessions: 0 });
    await op('GET', '/agents/{agent}', `/agents/${a('cat')}`, 200);
    await op('GET', '/agents/{agent}', `/agents/${a('ghost')}`, 404);
    await op('PUT', '/agents/{agent}/status', `/agents/${a('cat')}/status`, 200, { status: 'always-on' });
    await op('PUT', '/agents/{agent}/status', `/agents/${a('cat')}/status`, 400, { status: 'busy' });
    await op('PUT', '/agents/{agent}/status', `/agents/${a('ghost')}/status`, 404, { status: 'dnd' });

    await op('PUT', '/shops/{shop}/groups/{group}', `/shops/${SHOP}/groups/front`, 200, { agents: [a('ann'), a('cat')], isDefault: true });
    await op('PUT', '/shops/{shop}/groups/{group}', `/shops/${SHOP}/groups/x`, 400, { agents: [a('zed')] });
    await op('PUT', '/shops/{shop}/groups/{group}', `/shops/${a('nope')}/groups/x`, 404, {});

    // Canned replies, the shop's and a group's; bad names and texts are 400, past the bound 409.
    await op('PUT', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/refund`, 200, { text: 'Hello {visitor}' });
    const grouped = json(
      await op('PUT', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/hours?group=front`, 200, { text: '9 to 5' }),
    );
    assert.equal(grouped, { shop: SHOP, group: 'front', replies: [{ name: 'hours', text: '9 to 5' }] });
    await op('PUT', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/refund`, 400, { text: 'Hi {customer}' });
    await op('PUT', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/Bad%20Name`, 400, { text: 'x' });
    await op('PUT', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/x?group=nope`, 404, { text: 'x' });
    const full = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`r${i}`, 'x']));
    await op('PATCH', '/shops/{shop}', `/shops/${a('two')}`, 200, { canned: full });
    await op('PUT', '/shops/{shop}/canned/{name}', `/shops/${a('two')}/canned/one-more`, 409, { text: 'x' });
    assert.equal(json(await op('GET', '/shops/{shop}/canned', `/shops/${SHOP}/canned`, 200)).replies, [
      { name: 'refund', text: 'Hello {visitor}' },
    ]);
    await op('GET', '/shops/{shop}/canned', `/shops/${a('nope')}/canned`, 404);
    await op('DELETE', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/refund`, 200);
    await op('DELETE', '/shops/{shop}/canned/{name}', `/shops/${SHOP}/canned/refund`, 404);

    // A session (with the default group's least busy agent), and its transcript.
    await w.online(a('ann'));
    await w.filter(`<message type='consult' from='${a('v1')}/web' to='${SHOP}'><body id='m1'>hi</body></message>`);
    const sessions = json(await op('GET', '/sessions', '/sessions', 200));
    assert.is(sessions.length, 1);
    const first = sessions[0].agent;
    await w.filter(`<message type='chat' from='${first}/pc' to='${SHOP}' realto='${a('v1')}'><body id='r1'>hello</body></message>`);
    await op('GET', '/sessions', `/sessions?shop=${SHOP}`, 200);
    await op('GET', '/sessions', `/sessions?shop=${a('nope')}`, 404);
    await op('GET', '/sessions', '/sessions?shop=x&extra=1', 400);
    await op('GET', '/queue', `/queue?shop=${SHOP}`, 200);
    await op('GET', '/queue', '/queue', 400);
    // Opening hours that never open: v7's message is kept as a left message, listed, closed; then always open again.
    await op('PATCH', '/shops/{shop}', `/shops/${SHOP}`, 200, {
      hours: { timeZone: 'Asia/Shanghai', exceptions: [{ date: '2024-05-01' }] },
    });
    await op('PATCH', '/shops/{shop}', `/shops/${SHOP}`, 400, { hours: { timeZone: 'Mars/Olympus' } });
    await w.filter(`<message type='consult' from='${a('v7')}/web' to='${SHOP}'><body id='m7'>after hours</body></message>`);
    const left = json(await op('GET', '/left-messages', `/left-messages?shop=${SHOP}`, 200));
    assert.equal(
      left.map((l: { visitor: string }) => l.visitor),
      [a('v7')],
    );
    await op('GET', '/left-messages', `/left-messages?shop=${a('nope')}`, 404);
    await op('GET', '/left-messages', '/left-messages', 400);
    await op('POST', '/left-messages/close', '/left-messages/close', 200, { shop: SHOP, visitor: a('v7') });
    await op('POST', '/left-messages/close', '/left-messages/close', 404, { shop: SHOP, visitor: a('v7') });
    await op('POST', '/left-messages/close', '/left-messages/close', 400, { shop: SHOP });
    await op('GET', '/queue/abandoned', `/queue/abandoned?shop=${SHOP}`, 200);
    await op('GET', '/queue/abandoned', `/queue/abandoned?shop=${a('nope')}`, 404);
    const events = json(await op('GET', '/events', `/events?shop=${SHOP}`, 200));
    assert.equal([events.url, events.pending, events.lastSeq], [null, 0, 0], 'no webhook configured: no events');
    await op('GET', '/events', `/events?shop=${a('nope')}`, 404);
    await op('GET', '/events', '/events', 400);
    await op('PATCH', '/shops/{shop}', `/shops/${SHOP}`, 200, { hours: null, queueMaxWaitSec: 600 });
    await op('DELETE', '/shops/{shop}', `/shops/${SHOP}`, 409);
    await op('POST', '/sessions/transfer', '/sessions/transfer', 409, { shop: SHOP, visitor: a('v1'), to: a('bob') });
    await op('POST', '/sessions/transfer', '/sessions/transfer', 200, { shop: SHOP, visitor: a('v1'), toGroup: 'front' });
    const other = first === a('ann') ? a('cat') : a('ann');
    await op('POST', '/sessions/transfer', '/sessions/transfer', 200, { shop: SHOP, visitor: a('v1'), to: first, reason: 'back' });
    await op('POST', '/sessions/transfer', '/sessions/transfer', 404, { shop: SHOP, visitor: a('v9'), to: other });
    await op('POST', '/sessions/transfer', '/sessions/transfer', 400, { shop: SHOP, visitor: a('v1') });
    await op('POST', '/sessions/close', '/sessions/close', 200, { shop: SHOP, visitor: a('v1') });
    await op('POST', '/sessions/close', '/sessions/close', 404, { shop: SHOP, visitor: a('v1') });
    await op('POST', '/sessions/close', '/sessions/close', 400, { shop: SHOP });
    await w.desk.settled();

    const page = json(await op('GET', '/archive', `/archive?shop=${SHOP}&limit=1`, 200));
    assert.is(page.items.length, 1);
    await op('GET', '/archive', `/archive?format=csv&from=2000-01-01T00:00:00Z`, 200);
    await op('GET', '/archive', '/archive?cursor=not-ours', 400);
    await op('GET', '/archive', '/archive?from=yesterday', 400);
    await op('GET', '/archive', `/archive?shop=${a('nope')}`, 404);
    await op('GET', '/archive', '/archive?tag=VIP', 200);
    await op('GET', '/archive', '/archive?tag=a,b', 400);
    await op('GET', '/stats', '/stats?tag=vip', 200);
    await op('GET', '/archive/{id}', `/archive/${page.items[0].id}`, 200);
    await op('GET', '/archive/{id}', '/archive/nope', 404);
    await op('GET', '/stats', `/stats?shop=${SHOP}`, 200);
    await op('GET', '/stats', `/stats?shop=${a('nope')}`, 404);
    await op('GET', '/stats', '/stats?to=never', 400);
    // The audit log of the changes above; a read token refused a change (403).
    const audit = json(await op('GET', '/audit', '/audit?limit=2', 200));
    assert.is(audit.items.length, 2);
    await op('GET', '/audit', `/audit?limit=2&cursor=${audit.next}&token=admin&target=${SHOP}`, 200);
    await op('GET', '/audit', '/audit?cursor=nope', 400);
    await op('PATCH', '/shops/{shop}', `/shops/${SHOP}`, 403, { name: 'Not by a reader' }, READ_TOKEN);
    // A visitor's export (its archived session), then its erasure (no shim in this world: not complete).
    const exported = json(await op('GET', '/visitors/{jid}/export', `/visitors/${a('v1')}/export`, 200));
    assert.is(exported.archive.length, 1);
    await op('GET', '/visitors/{jid}/export', '/visitors/not-a-jid/export', 400);
    const forgotten = json(await op('DELETE', '/visitors/{jid}', `/visitors/${a('v1')}`, 200));
    assert.equal([forgotten.archived, forgotten.complete], [1, false]);
    await op('DELETE', '/visitors/{jid}', `/visitors/${a('v1')}?account=maybe`, 400);
    await op('DELETE', '/visitors/{jid}', `/visitors/${a('ann')}?account=true`, 409);

    await op('DELETE', '/shops/{shop}/groups/{group}', `/shops/${SHOP}/groups/front`, 200);
    await op('DELETE', '/shops/{shop}/groups/{group}', `/shops/${SHOP}/groups/front`, 404);
    await op('DELETE', '/shops/{shop}/agents/{agent}', `/shops/${SHOP}/agents/${a('cat')}`, 200);
    await op('DELETE', '/shops/{shop}/agents/{agent}', `/shops/${SHOP}/agents/${a('cat')}`, 404);
    await op('DELETE', '/shops/{shop}', `/shops/${a('two')}`, 200);
    await op('DELETE', '/shops/{shop}', `/shops/${a('two')}`, 404);

    // A shop's own webhook: the secret write-only; 400 without one to keep; DELETE back to the config's (404: none).
    await op('GET', '/shops/{shop}/events', `/shops/${SHOP}/events`, 200);
    await op('GET', '/shops/{shop}/events', `/shops/${a('nope')}/events`, 404);
    await op('PUT', '/shops/{shop}/events', `/shops/${SHOP}/events`, 400, { url: 'http://127.0.0.1:9/hook' });
    await op('PUT', '/shops/{shop}/events', `/shops/${a('nope')}/events`, 404, { off: true });
    const hook = await op('PUT', '/shops/{shop}/events', `/shops/${SHOP}/events`, 200, {
      url: 'http://127.0.0.1:9/hook',
      secret: 'a-documented-webhook-secret',
    });
    assert.not.ok(hook.text.includes('a-documented-webhook-secret'));
    await op('GET', '/shops/{shop}', `/shops/${SHOP}`, 200); // with its events, without the secret
    await op('PUT', '/shops/{shop}/events', `/shops/${SHOP}/events`, 200, { off: true });
    await op('DELETE', '/shops/{shop}/events', `/shops/${SHOP}/events`, 200);
    await op('DELETE', '/shops/{shop}/events', `/shops/${SHOP}/events`, 404);

    // Without the token: 401 with WWW-Authenticate, then 429 with Retry-After once the address failed too often.
    const refused = await op('GET', '/shops', '/shops', 401, undefined, null);
    assert.is(refused.headers.get('www-authenticate'), 'Bearer');
    await op('GET', '/shops', '/shops', 401, undefined, 'wrong');
    const blocked = await op('GET', '/shops', '/shops', 429, undefined, TOKEN);
    assert.ok(Number(blocked.headers.get('retry-after')) > 0);

    assert.equal(problems, [], problems.join('\n'));
    for (const operation of contract.operations())
      assert.ok(answered.get(operation)?.has(200), `${operation} answered 200 in this test (${[...(answered.get(operation) ?? [])]})`);
  } finally {
    await admin.close();
  }
});

test('a known path with another method is 405 with Allow; an unknown path 404; both problems', async () => {
  const { admin, call } = await world();
  try {
    const r = await call('PATCH', '/sessions');
    assert.equal([r.status, r.type, r.headers.get('allow')], [405, 'application/problem+json', 'GET']);
    const shop = await call('POST', `/shops/${SHOP}`);
    assert.equal(shop.headers.get('allow'), 'GET, PUT, PATCH, DELETE');
    assert.equal(JSON.parse(r.text), {
      type: 'about:blank',
      title: 'Method Not Allowed',
      status: 405,
      detail: 'PATCH is not allowed on /sessions; it allows GET',
    });
    const none = await call('GET', '/nowhere');
    assert.equal([none.status, none.type, JSON.parse(none.text).title], [404, 'application/problem+json', 'Not Found']);
  } finally {
    await admin.close();
  }
});

test('a validation problem lists every field at fault, with where it is and why', async () => {
  const { admin, call } = await world();
  try {
    const r = await call('PATCH', `/shops/${SHOP}`, { limits: { queueMax: 0 }, strategy: 'fastest', colour: 'red' });
    assert.equal([r.status, r.type], [400, 'application/problem+json']);
    const p = JSON.parse(r.text);
    assert.equal([p.type, p.title], ['urn:consult:problem:validation', 'The request is not valid']);
    assert.equal(p.errors.map((e: { field: string }) => e.field).sort(), ['colour', 'limits.queueMax', 'strategy']);
    assert.equal(
      p.errors.find((e: { field: string }) => e.field === 'limits.queueMax'),
      { in: 'body', field: 'limits.queueMax', pointer: '#/limits/queueMax', detail: 'must be an integer in 1..1000000' },
    );
    const q = JSON.parse((await call('GET', '/archive?limit=5000')).text);
    assert.equal(q.errors, [{ in: 'query', field: 'limit', detail: 'must be an integer in 1..1000' }]);
    const path = JSON.parse((await call('GET', '/agents/nobody')).text);
    assert.equal(path.errors, [{ in: 'path', field: 'agent', detail: 'must be a bare JID (user@domain)' }]);
  } finally {
    await admin.close();
  }
});

test.run();
