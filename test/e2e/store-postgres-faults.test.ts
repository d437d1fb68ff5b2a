// Two real sidecar processes on one private PostgreSQL that fails under them. Restarted: both listen for lease
// announcements again by themselves, so an announcement still makes a sidecar run a round at once and a clean stop
// hands its shop over through it. Hung (SIGSTOP, longer than the lease period): each owner gives its shops up
// before its lease ends, and after SIGCONT each shop is taken by one sidecar, never decided by two at once.
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { preferredOwner } from '../../src/cluster/leases.js';
import { StanzaFilterClient } from '../../src/gen/consult/v1/filter.js';
import { pgDriver, type Driver } from '../../src/storage/driver.js';
import { SqlStore } from '../../src/storage/sql-store.js';
import { grpcCalls, relayedTo } from '../support/grpc-calls.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { startSidecar, writeConfig, type SidecarProcess } from '../support/sidecar.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';

const D = 'pgfaults.test';
const SHOP = `shop_1@${D}`;
const SHOP2 = `shop_2@${D}`;
const LEASE_TTL_MS = 5000; // the sidecar's default lease period
const TABLES = 'shops, memberships, agents, resources, journal, snapshot_parts, shop_lease, sidecars';

interface Ctx {
  pg: Postgres;
  db: Driver; // the test's own connection: lease rows, listeners, NOTIFY
  sidecars: SidecarProcess[];
}
const faults = suite<Ctx>('two sidecars on a PostgreSQL that restarts or hangs');

// Every heartbeat and every lease change, with the database's clock (the same machine's as the sidecars' logs):
// statements that were waiting while the server was stopped are recorded when they ran, after SIGCONT.
const HISTORY = `
  CREATE TABLE public.history (tbl text, sidecar text, shop text, holder text, expires_at double precision, at double precision);
  CREATE FUNCTION public.record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    INSERT INTO public.history VALUES (TG_TABLE_NAME, NEW.sidecar, to_jsonb(NEW) ->> 'shop', NEW.holder, NEW.expires_at,
      extract(epoch from clock_timestamp()) * 1000);
    RETURN NEW;
  END $$;
  CREATE TRIGGER record AFTER INSERT OR UPDATE ON consult.shop_lease FOR EACH ROW EXECUTE FUNCTION public.record();
  CREATE TRIGGER record AFTER INSERT OR UPDATE ON consult.sidecars FOR EACH ROW EXECUTE FUNCTION public.record();`;

setUpSuite(faults, async (ctx) => {
  ctx.sidecars = [];
  ctx.pg = await startPostgres();
  ctx.db = await pgDriver(ctx.pg.url);
  await SqlStore.open(ctx.db); // the tables, so that the history can be kept from the first round
  await ctx.db.query(HISTORY); // no parameters: one simple query may hold several statements
});

faults.after.each(async (ctx) => {
  ctx.pg?.thaw();
  for (const s of ctx.sidecars ?? []) await s.kill('SIGKILL');
  if (ctx.sidecars) ctx.sidecars.length = 0;
  await ctx.db?.query(`TRUNCATE ${TABLES}, public.history`).catch(() => undefined);
});

faults.after(async (ctx) => {
  await ctx.db?.close();
  await ctx.pg?.stop();
});

/** Two sidecar ids such that the first is SHOP's preferred owner and the second SHOP2's. */
function ids(): [string, string] {
  for (let i = 0; ; i++) {
    const pair: [string, string] = [`one-${i}`, `two-${i}`];
    if (preferredOwner(SHOP, pair) === pair[0] && preferredOwner(SHOP2, pair) === pair[1]) return pair;
  }
}

async function startBoth(ctx: Ctx): Promise<[SidecarProcess, SidecarProcess]> {
  const agents = [{ jid: `ann@${D}`, maxSessions: 10 }];
  const shops = [SHOP, SHOP2].map((jid) => ({ jid, name: jid, agents }));
  const started: SidecarProcess[] = [];
  for (const sidecarId of ids()) {
    const s = startSidecar(writeConfig({ sidecarId, store: ctx.pg.url, shops }), await freePort());
    ctx.sidecars.push(s);
    started.push(s);
  }
  for (const s of started) await s.waitForLog('deciding shops', 0, 40_000);
  // Each its own shop, once both are ready (one that is not yet leaves its shops to the other meanwhile).
  await waitUntil(
    'SHOP decided by the first sidecar alone, SHOP2 by the second',
    async () => JSON.stringify([await decidersOf(SHOP, started), await decidersOf(SHOP2, started)]) === '[[0],[1]]',
    { timeoutMs: 40_000, everyMs: 250, detail: () => started.map(logOf).join('\n\n') },
  );
  return [started[0], started[1]];
}

interface Line {
  at: number;
  msg: string;
  shop?: string;
}
const parsed = (s: SidecarProcess): Line[] =>
  s.lines.flatMap((l) => {
    try {
      const j = JSON.parse(l);
      return [{ at: Date.parse(j.time), msg: String(j.msg), shop: j.shop }];
    } catch {
      return [];
    }
  });
const logOf = (s: SidecarProcess) => s.lines.join('\n');

const listeners = async (db: Driver) =>
  Number((await db.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN%consult_leases%'`))[0].n);

let probes = 0;
/**
 * Which of the sidecars decide the shop now, asked over gRPC: the owner relays the shop's one visitor (always the
 * same, so that its one session goes on and the agent's room never runs out), the others refuse it.
 */
async function decidersOf(shop: string, sidecars: SidecarProcess[]): Promise<number[]> {
  const visitor = shop === SHOP ? 1 : 2;
  const { filter, online } = grpcCalls({ domain: D, shop, deadlineMs: 5000 });
  const out: number[] = [];
  for (const [i, s] of sidecars.entries()) {
    const c = new StanzaFilterClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    try {
      await online(c);
      if (relayedTo(await filter(c, visitor, `probe-${++probes}`))) out.push(i);
    } finally {
      c.close();
    }
  }
  return out;
}

faults(
  'after a PostgreSQL restart both sidecars listen again, and a clean stop hands the shop over through the announcement',
  async (ctx) => {
    const [first, second] = await startBoth(ctx);
    await waitUntil('both sidecars listening for announcements', async () => (await listeners(ctx.db)) === 2);

    const since = [first.lines.length, second.lines.length];
    await ctx.pg.restart(); // every connection is cut, the listening ones too
    for (const [i, s] of [first, second].entries()) {
      await s.waitForLog('announcements (LISTEN) heard again', since[i], 20_000);
      const lines = s.lines.slice(since[i]);
      assert.is(lines.filter((l) => l.includes('lost the PostgreSQL connection that hears announcements')).length, 1, 'the loss, once');
      assert.is(lines.filter((l) => l.includes('heard again')).length, 1, 'the recovery, once');
    }
    await waitUntil('both sidecars listening again', async () => (await listeners(ctx.db)) === 2);

    // An announcement makes the standby run a round at once: ten of them, 100 ms apart, give it far more rounds
    // (heartbeats) than its timer's one a second could.
    const [, id2] = ids();
    const from = Date.now();
    for (let i = 0; i < 10; i++) {
      await ctx.db.query(`SELECT pg_notify('consult_leases', '')`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const until = Date.now();
    const [{ beats }] = await ctx.db.query(
      `SELECT count(*)::int AS beats FROM public.history WHERE tbl = 'sidecars' AND sidecar = $1 AND at BETWEEN $2 AND $3`,
      [id2, from, until],
    );
    assert.ok(beats >= 5, `the second sidecar ran ${beats} rounds in ${until - from} ms of announcements`);

    const before = second.lines.length;
    await first.kill('SIGTERM'); // finishes SHOP, releases its lease and announces it
    await second.waitForLog('took the lease of a shop', before, 10_000).catch((e) => {
      throw new Error(`${e.message}\nfirst:\n${logOf(first)}`);
    });
    assert.ok(
      second.lines.slice(before).some((l) => l.includes('took the lease') && l.includes(SHOP)),
      'the second took SHOP',
    );
    assert.equal(await decidersOf(SHOP, [second]), [0], 'and decides it');
  },
);

faults('PostgreSQL hung past the lease period: owners give up before their leases end, then one sidecar takes each shop', async (ctx) => {
  const [first, second] = await startBoth(ctx);
  const both = [first, second];
  await new Promise((r) => setTimeout(r, 1500)); // a few renewals recorded

  const frozenAt = Date.now();
  ctx.pg.freeze();
  for (const s of both) await s.waitForLog('no longer deciding any shop', 0, 20_000);
  const wait = frozenAt + LEASE_TTL_MS + 2500 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // hung for longer than the lease period
  const thawedAt = Date.now();
  ctx.pg.thaw();

  // Each owner gave its shops up before the lease in force when the server stopped ran out. That lease is the last
  // renewal that ran before SIGCONT (nothing runs while the server is stopped).
  for (const [i, shop] of [SHOP, SHOP2].entries()) {
    const [{ ends }] = await ctx.db.query(
      `SELECT max(expires_at) AS ends FROM public.history WHERE tbl = 'shop_lease' AND shop = $1 AND holder LIKE $2 AND at < $3`,
      [shop, `${ids()[i]}#%`, thawedAt],
    );
    const gaveUp = parsed(both[i]).find((l) => l.msg.includes('no longer deciding any shop'))!.at;
    assert.ok(gaveUp < Number(ends), `${shop}: given up at ${gaveUp}, ${Number(ends) - gaveUp} ms before its lease ended (${ends})`);
  }

  await waitUntil('each shop decided again', async () => {
    const took = both.map((s) =>
      parsed(s)
        .filter((l) => l.at > thawedAt && l.msg.includes('took the lease'))
        .map((l) => l.shop),
    );
    return took.flat().includes(SHOP) && took.flat().includes(SHOP2);
  });
  // Never two deciders: from the logs, each sidecar decides a shop from taking it until it gives it up, loses it or
  // hands it over; these spans of the two sidecars never overlap for one shop (from the freeze on: a hand-over at
  // start is logged once its lease was released, when the other may already have logged taking it).
  for (const shop of [SHOP, SHOP2]) {
    const spans = both.map((s) => spansOf(parsed(s), shop).filter((span) => span.to > frozenAt));
    for (const a of spans[0])
      for (const b of spans[1])
        assert.ok(
          a.to <= b.from || b.to <= a.from,
          `${shop} decided by both: ${JSON.stringify({ a, b })}\n${both.map(logOf).join('\n\n')}`,
        );
  }
  const [d1, d2] = [await decidersOf(SHOP, both), await decidersOf(SHOP2, both)];
  assert.is(d1.length, 1, `SHOP decided by exactly one sidecar (${d1})`);
  assert.is(d2.length, 1, `SHOP2 decided by exactly one sidecar (${d2})`);
});

/** When a sidecar decided the shop, by its log: from taking the lease to the next line that ends it (or now). */
function spansOf(lines: Line[], shop: string): { from: number; to: number }[] {
  const spans: { from: number; to: number }[] = [];
  let from: number | undefined;
  for (const l of lines) {
    const ends =
      l.msg.includes('no longer deciding any shop') ||
      (l.shop === shop && (l.msg.includes('lost the lease') || l.msg.includes('handed a shop over')));
    if (from === undefined && l.shop === shop && l.msg.includes('took the lease')) from = l.at;
    else if (from !== undefined && ends) {
      spans.push({ from, to: l.at });
      from = undefined;
    }
  }
  if (from !== undefined) spans.push({ from, to: Number.POSITIVE_INFINITY });
  return spans;
}

faults.run();
