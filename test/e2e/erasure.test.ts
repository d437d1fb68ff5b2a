import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { pgDriver, pgliteDriver } from '../../src/storage/driver.js';
import { runConsultctl } from '../support/consultctl.js';
import { DURABLE_STORES, type E2eStore, openStore } from '../support/e2e-stores.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { bodyId, connectClient, type Element, isAck, type TestClient } from '../support/xmpp.js';
import parse from '@xmpp/xml/lib/parse.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const VISITOR = `visitor1@${D}`;
const TOKEN = 'erasure-e2e-admin-token';
const SECRETS = ['my-first-secret', 'agent-answer-secret', 'my-second-secret', 'offline-secret'];

interface Ctx {
  store: E2eStore;
  stack: Stack;
  adminPort: number;
}

const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;
const reply = (id: string, text: string, to: string) =>
  `<message type='chat' to='${SHOP}' realto='${to}'><body id='${id}' msgType='1'>${text}</body></message>`;

/** consultctl against the sidecar's admin API. */
const ctl = (ctx: Ctx, args: string[]) => runConsultctl(`http://127.0.0.1:${ctx.adminPort}`, TOKEN, args);

const api = async (ctx: Ctx, p: string) => {
  const res = await fetch(`http://127.0.0.1:${ctx.adminPort}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.is(res.status, 200, `GET ${p}`);
  return res.json() as Promise<Record<string, unknown>>;
};

/** The user's MAM archive as its own client queries it (XEP-0313): the forwarded messages' bodies. */
async function mamBodies(client: TestClient, queryid: string): Promise<string[]> {
  await client.xmpp.iqCaller.request(parse(`<iq type='set'><query xmlns='urn:xmpp:mam:2' queryid='${queryid}'/></iq>`), 10_000);
  return client.received
    .filter((el) => el.getChild('result', 'urn:xmpp:mam:2')?.attrs.queryid === queryid)
    .map((el: Element) => {
      const forwarded = el.getChild('result', 'urn:xmpp:mam:2')!.getChild('forwarded', 'urn:xmpp:forward:0');
      return forwarded?.getChild('message')?.getChildText('body') ?? '';
    });
}

async function offlineCount(stack: Stack, user: string): Promise<number> {
  const r = await stack.ejabberd.ctl('get_offline_count', user, D);
  assert.is(r.code, 0, r.stderr);
  return Number(r.stdout.trim());
}

/** Every row of the sidecar's journal, snapshot and archive, read from the store itself (the sidecar stopped). */
async function storedRows(store: E2eStore): Promise<string> {
  const db = store.kind === 'pglite' ? await pgliteDriver(store.url.slice('pglite:'.length)) : await pgDriver(store.url);
  try {
    const rows = [
      ...(await db.query('SELECT shop, body FROM consult.journal')),
      ...(await db.query('SELECT shop, body FROM consult.snapshot_parts')),
      ...(await db.query('SELECT visitor, body FROM consult.archive')),
    ];
    return JSON.stringify(rows);
  } finally {
    await db.close();
  }
}

for (const kind of DURABLE_STORES) {
  const e2e = suite<Ctx>(`erasure through ejabberd with mod_offline and mod_mam [${kind}]`);

  setUpSuite(e2e, async (ctx) => {
    ctx.store = await openStore(kind);
    ctx.adminPort = await freePort();
    ctx.stack = await startStack({
      domain: D,
      config: {
        systemJid: `admin@${D}`,
        store: ctx.store.url,
        admin: { port: ctx.adminPort, token: TOKEN },
        timers: { tickSec: 1 },
        shops: [{ jid: SHOP, name: 'Erasure shop', language: 'en', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
      },
      extraModules: { mod_mam: { default: 'always' } },
      users: ['visitor1', 'visitor2', 'test01', 'friend'],
    });
  });

  e2e.after(async (ctx) => {
    try {
      await ctx.stack?.stop();
    } finally {
      await ctx.store?.stop();
    }
  });

  e2e('forget: no trace in the archive, the journal, offline storage or MAM; the agent is told', async (ctx) => {
    const { stack } = ctx;
    const agent = await stack.connect('test01', 'desk');
    const friend = await stack.connect('friend', 'pc');
    let visitor = await stack.connect('visitor1', 'web');

    // A first session, answered and closed (archived), then a second one left open.
    await visitor.send(consult('e1', SECRETS[0]));
    await visitor.waitFor(isAck('e1'));
    await agent.waitFor(bodyId('e1'));
    await agent.send(reply('r1', SECRETS[1], VISITOR));
    await visitor.waitFor(bodyId('r1'));
    const closed = await fetch(`http://127.0.0.1:${ctx.adminPort}/sessions/close`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ shop: SHOP, visitor: VISITOR }),
    });
    assert.is(closed.status, 200);
    await waitUntil(
      'the closed session in the archive',
      async () => ((await api(ctx, `/archive?visitor=${VISITOR}`)).items as unknown[]).length === 1,
    );
    await visitor.send(consult('e2', SECRETS[2]));
    await visitor.waitFor(isAck('e2'));
    await agent.waitFor(bodyId('e2'));

    // Away: a friend's message waits in offline storage. MAM has the visitor's messages.
    await visitor.stop();
    await friend.send(`<message type='chat' to='${VISITOR}'><body>${SECRETS[3]}</body></message>`);
    await waitUntil('the offline message stored', async () => (await offlineCount(stack, 'visitor1')) === 1);
    // Back without a presence (which would take the offline message out of storage), only to read its MAM archive.
    const peek = await connectClient({
      service: stack.service,
      domain: D,
      username: 'visitor1',
      password: stack.password,
      resource: 'peek',
      noPresence: true,
    });
    try {
      const mamBefore = await mamBodies(peek, 'before');
      assert.ok(mamBefore.includes(SECRETS[3]) && mamBefore.includes(SECRETS[1]), `MAM before: ${JSON.stringify(mamBefore)}`);
    } finally {
      await peek.stop();
    }
    assert.is(await offlineCount(stack, 'visitor1'), 1);

    const exported = await ctl(ctx, ['export', VISITOR]);
    assert.is(exported.code, 0, exported.stderr);
    const data = JSON.parse(exported.stdout);
    assert.equal([data.shops.map((s: { shop: string }) => s.shop), data.archive.length], [[SHOP], 1]);
    assert.ok(exported.stdout.includes(SECRETS[2]) && exported.stdout.includes(SECRETS[1]));

    const forgot = await ctl(ctx, ['forget', VISITOR]);
    assert.is(forgot.code, 0, forgot.stderr);
    const result = JSON.parse(forgot.stdout);
    assert.equal(
      { ...result, ejabberd: { ...result.ejabberd, node: typeof result.ejabberd.node } },
      {
        visitor: VISITOR,
        shops: [SHOP],
        heldElsewhere: [],
        archived: 1,
        ejabberd: { node: 'string', offline: true, mam: true, account: false },
        complete: true,
      },
    );
    const told = await agent.waitFor((el) => (el.getChildText('body') ?? '').includes('asked to be forgotten'));
    assert.is(told.attrs.realfrom, VISITOR);

    assert.equal((await api(ctx, `/archive?visitor=${VISITOR}`)).items, []);
    assert.equal((await api(ctx, `/visitors/${VISITOR}/export`)).shops, []);
    // Both are in the audit log, under the visitor they named.
    const audited = ((await api(ctx, `/audit?target=${VISITOR}`)).items as { route: string; status: number }[]).map(
      (e) => `${e.route} ${e.status}`,
    );
    assert.ok(audited.includes('DELETE /visitors/{jid} 200') && audited.includes('GET /visitors/{jid}/export 200'), audited.join('\n'));
    assert.is(await offlineCount(stack, 'visitor1'), 0);
    visitor = await stack.connect('visitor1', 'web3');
    assert.equal(await mamBodies(visitor, 'after'), []);
    await visitor.settle();
    assert.not.ok(
      visitor.received.some((el) => SECRETS.some((s) => (el.getChildText('body') ?? '').includes(s))),
      'no old message reached the visitor on reconnecting',
    );
  });

  e2e('forget --account: a widget-like visitor account is removed by ejabberd too', async (ctx) => {
    const { stack } = ctx;
    const agent = await stack.connect('test01', 'desk2');
    const visitor = await stack.connect('visitor2', 'web');
    await visitor.send(consult('w1', 'widget hello'));
    await agent.waitFor(bodyId('w1'));
    await visitor.stop();
    assert.is((await stack.ejabberd.ctl('check_account', 'visitor2', D)).code, 0);
    const forgot = await ctl(ctx, ['forget', `visitor2@${D}`, '--account']);
    assert.is(forgot.code, 0, forgot.stderr);
    assert.equal(JSON.parse(forgot.stdout).ejabberd.account, true);
    assert.is.not((await stack.ejabberd.ctl('check_account', 'visitor2', D)).code, 0, 'the account is gone');
  });

  e2e('the store itself, read with the sidecar stopped, holds nothing of the forgotten visitor', async (ctx) => {
    await ctx.stack.sidecar.kill();
    const rows = await storedRows(ctx.store);
    for (const s of [VISITOR, `visitor2@${D}`, 'widget hello', ...SECRETS]) assert.not.ok(rows.includes(s), `the store holds ${s}`);
    assert.ok(rows.length > 2, 'the tables were read');
  });

  e2e.run();
}
