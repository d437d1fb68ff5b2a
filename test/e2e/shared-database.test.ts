// End to end: the sidecar's store and ejabberd's SQL storage (here MAM, mod_mam db_type sql, over ejabberd's
// own PostgreSQL driver) in one PostgreSQL database. Both have a table called `archive`: ours is in the schema
// `consult`, ejabberd's (pg.sql, the old schema: new_sql_schema false) in `public`. Both orders are run: pg.sql
// loaded before the sidecar's first start, and the sidecar first on a fresh database, pg.sql loaded after it.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pg from 'pg';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type Ejabberd, newShimCredential, startEjabberd } from '../support/ejabberd.js';
import { type Postgres, startPostgres } from '../support/postgres.js';
import { type SidecarProcess, startSidecar, writeConfig } from '../support/sidecar.js';
import { buildShim, type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const PG_SQL = '/usr/share/ejabberd/sql/pg.sql';
const PASSWORD = 'secret';
const USERS = ['visitor1', 'shop_2', 'test01', 'alice', 'bob'];
const sidecarConfig = (store: string) => ({
  store,
  systemJid: `admin@${D}`,
  shops: [{ jid: SHOP, name: '张滨测试店铺', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
});

/** A new database on the server of `postgres`, and its URL. */
async function createDatabase(postgres: Postgres, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(postgres.url);
  url.pathname = `/${name}`;
  return url.toString();
}

async function sql<T = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** ejabberd's old-schema tables, in `public` (the default search path). */
const loadPgSql = (url: string) => sql(url, fs.readFileSync(PG_SQL, 'utf8'));

/** ejabberd.yml for SQL storage on `url`'s database, and mod_mam in SQL, archiving every chat. */
function ejabberdSql(url: string) {
  const u = new URL(url);
  return {
    extraConfig: [
      'sql_type: pgsql',
      `sql_server: ${JSON.stringify(u.hostname)}`,
      `sql_port: ${u.port}`,
      `sql_database: ${JSON.stringify(u.pathname.slice(1))}`,
      `sql_username: ${JSON.stringify(decodeURIComponent(u.username))}`,
      `sql_password: ${JSON.stringify(decodeURIComponent(u.password))}`,
      'new_sql_schema: false',
    ],
    // mod_mam's `default` is `never` (nothing archived until a user asks): `always` for these users.
    extraModules: { mod_mam: { db_type: 'sql', default: 'always' } },
  };
}

const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const isType = (type: string) => (el: Element) => el.is('message') && el.attrs.type === type;

let queries = 0;
/** A XEP-0313 query of `client`'s own archive; resolves to the archived messages' bodies, oldest first. */
async function mamBodies(client: TestClient): Promise<string[]> {
  const queryid = `q${++queries}`;
  const id = `mam-${queryid}`;
  await client.send(`<iq type='set' id='${id}'><query xmlns='urn:xmpp:mam:2' queryid='${queryid}'/></iq>`);
  const fin = await client.waitFor((el) => el.is('iq') && el.attrs.id === id, 15_000);
  assert.is(fin.attrs.type, 'result', fin.toString());
  assert.ok(fin.getChild('fin', 'urn:xmpp:mam:2'), fin.toString());
  // The results come before the iq's answer, on the same stream.
  return client.received
    .map((el) => el.getChild('result', 'urn:xmpp:mam:2'))
    .filter((r): r is Element => r?.attrs.queryid === queryid)
    .map((r) => r.getChild('forwarded', 'urn:xmpp:forward:0')?.getChild('message')?.getChildText('body') ?? '');
}

/** alice and bob chat (plain type='chat'); alice's MAM query returns the chat, and public.archive holds it. */
async function mamWorks(url: string, connect: (user: string) => Promise<TestClient>, tag: string): Promise<void> {
  const [alice, bob] = await Promise.all([connect('alice'), connect('bob')]);
  const lines = [`${tag} hello bob`, `${tag} hello alice`, `${tag} bye`];
  await alice.send(`<message type='chat' to='bob@${D}'><body>${lines[0]}</body></message>`);
  await bob.waitFor((el) => el.getChildText('body') === lines[0]);
  await bob.send(`<message type='chat' to='alice@${D}'><body>${lines[1]}</body></message>`);
  await alice.waitFor((el) => el.getChildText('body') === lines[1]);
  await alice.send(`<message type='chat' to='bob@${D}'><body>${lines[2]}</body></message>`);
  await bob.waitFor((el) => el.getChildText('body') === lines[2]);

  assert.equal(
    (await mamBodies(alice)).filter((b) => b.startsWith(tag)),
    lines,
    "alice's archive, in order",
  );
  assert.equal(
    (await mamBodies(bob)).filter((b) => b.startsWith(tag)),
    lines,
    "bob's archive, in order",
  );

  const rows = await sql<{ username: string; bare_peer: string; txt: string }>(
    url,
    `SELECT username, bare_peer, txt FROM public.archive WHERE txt LIKE $1 ORDER BY id`,
    [`${tag} %`],
  );
  // One row per message in each of the two archives.
  assert.equal(
    rows.filter((r) => r.username === 'alice').map((r) => [r.bare_peer, r.txt]),
    lines.map((l) => [`bob@${D}`, l]),
  );
  assert.equal(
    rows.filter((r) => r.username === 'bob').map((r) => [r.bare_peer, r.txt]),
    lines.map((l) => [`alice@${D}`, l]),
  );
}

const tablesOf = async (url: string, schema: string) =>
  (await sql<{ t: string }>(url, `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1`, [schema])).map(
    (r) => r.t,
  );

// ---------------------------------------------------------------------------------------------------------------
// ejabberd's pg.sql first, then the stack (sidecar, then ejabberd) on the same database.

interface Ctx {
  postgres: Postgres;
  url: string;
  stack: Stack;
}
const first = suite<Ctx>('shared database: ejabberd pg.sql loaded first, then sidecar and ejabberd');

setUpSuite(first, async (ctx) => {
  ctx.postgres = await startPostgres();
  ctx.url = await createDatabase(ctx.postgres, 'shared');
  await loadPgSql(ctx.url);
  ctx.stack = await startStack({
    domain: D,
    config: sidecarConfig(ctx.url),
    shimOptions: { timeout: 2000, failure_policy: 'reject' },
    users: USERS,
    password: PASSWORD,
    ...ejabberdSql(ctx.url),
  });
});

first.after(async (ctx) => {
  try {
    await ctx.stack?.stop();
  } finally {
    await ctx.postgres?.stop();
  }
});

first('both schemas in the one database, each with its own archive table', async (ctx) => {
  const [ours, theirs] = [await tablesOf(ctx.url, 'consult'), await tablesOf(ctx.url, 'public')];
  assert.ok(ours.includes('archive') && ours.includes('journal'), ours.join());
  assert.ok(theirs.includes('archive') && theirs.includes('users'), theirs.join());
  assert.not.ok(theirs.includes('journal'), 'nothing of ours in public');
});

first('the seed consult flow goes through the sidecar; /close archives the session in consult.archive', async (ctx) => {
  const [visitor, agent] = await Promise.all([ctx.stack.connect('visitor1', 'web-1'), ctx.stack.connect('test01', 'pc')]);
  await visitor.send(
    `<message type='consult' to='${SHOP}' realfrom='visitor1@${D}' realto='test01@${D}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='V-1'>1</body></message>`,
  );
  await visitor.waitFor((el) => isType('mstat')(el) && bodyId('V-1')(el));
  const welcome = await visitor.waitFor((el) => el.attrs.auto_reply === 'true');
  assert.equal([welcome.attrs.from, welcome.getChildText('body')], [SHOP, '张滨测试店铺']);
  const relayed = await agent.waitFor(bodyId('V-1'));
  assert.equal([relayed.attrs.from, relayed.attrs.realfrom, relayed.attrs.type], [SHOP, `visitor1@${D}`, 'consult']);

  await agent.send(`<message to="${SHOP}" type="chat"><body id="A-1" maType="6" msgType="1">122233</body></message>`);
  await agent.waitFor((el) => isType('mstat')(el) && bodyId('A-1')(el));
  const reply = await visitor.waitFor(bodyId('A-1'));
  assert.equal([reply.attrs.from, reply.attrs.realfrom, reply.getChildText('body')], [SHOP, `test01@${D}`, '122233']);

  await agent.send(`<message to="${SHOP}" type="chat"><body id="C-1">/close</body></message>`);
  // Written after the close is durable: asynchronous.
  const rows = await waitUntil(
    'the closed session in consult.archive',
    async () => {
      const r = await sql<{ shop: string; visitor: string; agent: string; body: string }>(
        ctx.url,
        `SELECT shop, visitor, agent, body FROM consult.archive WHERE visitor = $1`,
        [`visitor1@${D}`],
      );
      return r.length ? r : undefined;
    },
    { timeoutMs: 20_000, detail: () => ctx.stack.sidecar.lines.slice(-20).join('\n') },
  );
  assert.is(rows.length, 1);
  assert.equal([rows[0].shop, rows[0].agent], [SHOP, `test01@${D}`]);
  assert.ok(rows[0].body.includes('122233'), 'the transcript holds the reply');
});

first("ejabberd's MAM on the same database: a chat archived in public.archive and returned by a MAM query", async (ctx) => {
  await mamWorks(ctx.url, (u) => ctx.stack.connect(u), 'first-order');
  // ejabberd never wrote into our archive.
  const ours = await sql<{ n: string }>(ctx.url, `SELECT count(*) AS n FROM consult.archive`);
  assert.is(ours[0].n, '1');
});

first.run();

// ---------------------------------------------------------------------------------------------------------------
// The other order: the sidecar first on a fresh database (it creates its schema), then pg.sql, then ejabberd.

interface Ctx2 {
  postgres: Postgres;
  url: string;
  sidecar: SidecarProcess;
  ejabberd: Ejabberd;
  clients: TestClient[];
}
const second = suite<Ctx2>('shared database: sidecar first on a fresh database, then pg.sql, then ejabberd');

setUpSuite(second, async (ctx) => {
  ctx.clients = [];
  buildShim();
  ctx.postgres = await startPostgres();
  ctx.url = await createDatabase(ctx.postgres, 'fresh');
  const credential = newShimCredential();
  const port = await freePort();
  ctx.sidecar = startSidecar(writeConfig({ grpc: { shims: [credential] }, ...sidecarConfig(ctx.url) }), port);
  await ctx.sidecar.waitForLog('sidecar listening', 0, 30_000);
  assert.ok((await tablesOf(ctx.url, 'consult')).includes('archive'), 'the sidecar made its schema');
  assert.equal(await tablesOf(ctx.url, 'public'), [], 'and nothing in public');
  await loadPgSql(ctx.url);
  ctx.ejabberd = await startEjabberd({
    domain: D,
    credential,
    shimOptions: { sidecar_host: '127.0.0.1', sidecar_port: port, timeout: 2000, failure_policy: 'reject' },
    ...ejabberdSql(ctx.url),
  });
  await ctx.sidecar.waitForLog('shim hello', 0, 20_000);
  await Promise.all(USERS.map((u) => ctx.ejabberd.register(u, PASSWORD)));
});

second.after(async (ctx) => {
  try {
    await Promise.all((ctx.clients ?? []).map((c) => c.stop().catch(() => undefined)));
    await ctx.ejabberd?.stop();
  } finally {
    try {
      await ctx.sidecar?.kill();
    } finally {
      await ctx.postgres?.stop();
    }
  }
});

const connect2 = async (ctx: Ctx2, username: string, resource = 'r') => {
  const c = await connectClient({ service: `xmpp://127.0.0.1:${ctx.ejabberd.c2sPort}`, domain: D, username, password: PASSWORD, resource });
  ctx.clients.push(c);
  return c;
};

second("ejabberd's MAM works on the database the sidecar made first", async (ctx) => {
  await mamWorks(ctx.url, (u) => connect2(ctx, u), 'second-order');
});

second('and the sidecar still routes: a consult message reaches the agent and is answered', async (ctx) => {
  const [visitor, agent] = await Promise.all([connect2(ctx, 'visitor1', 'web-1'), connect2(ctx, 'test01', 'pc')]);
  await visitor.send(`<message type='consult' to='${SHOP}'><body id='S-1'>hi</body></message>`);
  await visitor.waitFor((el) => isType('mstat')(el) && bodyId('S-1')(el));
  const relayed = await agent.waitFor(bodyId('S-1'));
  assert.equal([relayed.attrs.from, relayed.attrs.realfrom], [SHOP, `visitor1@${D}`]);
  await agent.send(`<message to="${SHOP}" type="chat"><body id="S-2">hello</body></message>`);
  const reply = await visitor.waitFor(bodyId('S-2'));
  assert.equal([reply.attrs.from, reply.attrs.realfrom], [SHOP, `test01@${D}`]);
});

second.run();
