// Benchmark (not a test): two sidecars on one PostgreSQL against one. This process acts as the
// shims: it keeps a FilterStream (Hello, agents' presence, InjectAck) to every sidecar, learns
// from each one's WatchList which shops it owns, and sends each shop's stanzas to its owner only
// (the higher lease epoch wins, then the newest claim, as consult_owners.erl does; with no owner it bounces the stanza itself,
// as the shim's failure policy `reject` does). In one run it measures, --repeat times in turns:
//   - throughput with one sidecar and with two (the same offered load: one window over all streams);
//   - a clean stop (SIGTERM) and a SIGKILL of the second sidecar: time until the first lists its
//     shops as owned, and what happened to the stanzas sent to those shops meanwhile;
//   - the second sidecar (re)joining: time until it owns its share.
//   npx tsx bench/scale-out.ts [--shops 8] [--messages 20000] [--repeat 3]
//                              [--visitors 25] [--window 256] [--warmup 4000] [--pace-ms 10] [--max-minutes 8]
// Everything is on loopback; PostgreSQL is private (bench/harness.ts), every sidecar is the real process.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { freePort } from '../scripts/ejabberd-node.js';
import { Action, SessionEvent_Kind, type ShimMessage, type SidecarMessage, StanzaFilterClient } from '../src/gen/consult/v1/filter.js';
import { preferredOwner } from '../src/cluster/leases.js';
import { type BenchStore, fmt, journalDelta, type Sidecar, StoreFactory, startSidecarProcess, table } from './harness.js';
import { cpuSeconds, percentile, pidsWithArg } from './stats.js';

const { values: opt } = parseArgs({
  options: {
    shops: { type: 'string', default: '8' },
    messages: { type: 'string', default: '20000' },
    repeat: { type: 'string', default: '3' },
    visitors: { type: 'string', default: '25' },
    window: { type: 'string', default: '256' },
    warmup: { type: 'string', default: '4000' },
    'pace-ms': { type: 'string', default: '10' },
    'max-minutes': { type: 'string', default: '8' },
  },
});
const N = Number(opt.messages);
const REPEAT = Number(opt.repeat);
const VISITORS = Number(opt.visitors); // per shop and throughput run
const WINDOW = Number(opt.window);
const WARMUP = Number(opt.warmup);
const PACE_MS = Number(opt['pace-ms']);
const D = 'scale.bench';
const SHOPS = Array.from({ length: Number(opt.shops) }, (_, i) => `shop_${i + 1}@${D}`);
if (SHOPS.length < 2) throw new Error('--shops: at least 2 (each sidecar needs a share)');
const AGENTS = 3; // per shop, room for every session the run opens
const agentsOf = (shop: string) => Array.from({ length: AGENTS }, (_, k) => `a${k + 1}_${shop.split('@')[0]}@${D}`);
const PHASE_MS = 180_000;
const EVENT_MS = 30_000;
const NOT_OWNER = /decided by another consult sidecar/;
const NODE = 'bench@loopback';
const TOKEN = 'bench-shim-token'; // the link authenticated as in production (grpc.shims)

// Sidecar ids whose rendezvous hashing splits the shops evenly: with few shops, hashing alone is often 6/2.
function sidecarIds(): [string, string] {
  for (let i = 0; ; i++) {
    const ids: [string, string] = [`bench-a${i}`, `bench-b${i}`];
    const first = SHOPS.filter((s) => preferredOwner(s, ids) === ids[0]).length;
    if (Math.abs(2 * first - SHOPS.length) <= 1) return ids;
  }
}
const [ID1, ID2] = sidecarIds();
const SHARE2 = new Set(SHOPS.filter((s) => preferredOwner(s, [ID1, ID2]) === ID2));

// What mod_consult forwards: the raw stanza with the server-checked from/to.
const stanza = (shop: string, visitor: string, id: string) =>
  Buffer.from(
    `<message xmlns='jabber:client' type='consult' to='${shop}' from='${visitor}@${D}/web' realfrom='${visitor}@${D}' realto='${shop}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='${id}'>hello ${id}</body></message>`,
  );

type Outcome = 'ok' | 'not-owner' | 'refused' | 'no-owner' | 'lost';
interface Sent {
  shop: string;
  at: number;
  done: number;
  outcome: Outcome;
  action?: Action;
}

/** One shim stream to one sidecar and the shops it claims (shop → lease epoch, and when it started claiming it at that epoch). */
interface Conn {
  label: string;
  client: StanzaFilterClient;
  call: grpc.ClientDuplexStream<ShimMessage, SidecarMessage>;
  claims: Map<string, [epoch: number, since: number]>;
  watched: boolean; // its first WatchList came
  up: boolean;
  pending: Map<string, (outcome: Outcome, action?: Action) => void>;
}

const auth = new grpc.Metadata();
auth.set('authorization', `Bearer ${TOKEN}`);

/** The load generator in the shims' place. */
class Shim {
  readonly conns = new Map<string, Conn>();
  private seq = 0;
  private claimTick = 0;
  private readonly listeners = new Set<() => void>();

  async connect(label: string, port: number): Promise<Conn> {
    const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const conn: Conn = { label, client, call: client.filterStream(auth), claims: new Map(), watched: false, up: true, pending: new Map() };
    this.conns.set(label, conn);
    const down = () => {
      if (!conn.up) return;
      conn.up = false;
      conn.claims.clear(); // a stream that is down claims nothing (the shim forgets it too)
      for (const settle of conn.pending.values()) settle('lost');
      conn.pending.clear();
      this.changed();
    };
    conn.call.on('data', (m: SidecarMessage) => {
      const v = m.verdict;
      if (v) {
        const settle = conn.pending.get(v.seq);
        conn.pending.delete(v.seq);
        if (v.action !== Action.ACTION_REJECT) settle?.('ok', v.action);
        else settle?.(NOT_OWNER.test(v.error?.text ?? '') ? 'not-owner' : 'refused', v.action);
      } else if (m.watch) {
        const tick = ++this.claimTick;
        const epochs = m.watch.ownedEpochs.length === m.watch.owned.length ? m.watch.ownedEpochs.map(Number) : [];
        conn.claims = new Map(
          m.watch.owned.map((s, i): [string, [number, number]] => {
            const epoch = epochs[i] ?? 0;
            const had = conn.claims.get(s);
            return [s, had && had[0] === epoch ? had : [epoch, tick]];
          }),
        );
        conn.watched = true;
        this.changed();
      } else if (m.inject && m.inject.id !== '0') conn.call.write({ injectAck: { id: m.inject.id } });
    });
    conn.call.on('error', down);
    conn.call.on('end', down);
    conn.call.on('close', down);
    // As a shim does on every new stream: say who it is, then report every agent's presence.
    conn.call.write({ hello: { node: NODE, hosts: [D], shimVersion: 'bench', clusterNodes: [NODE], features: ['structured-verdict'] } });
    for (const a of SHOPS.flatMap(agentsOf))
      conn.call.write({ event: { kind: SessionEvent_Kind.PRESENCE_SET, jid: `${a}/pc`, show: '', priority: 0, status: '' } });
    await this.until(`${label}: first WatchList`, () => conn.watched, EVENT_MS);
    return conn;
  }

  /** The stream a shop's stanza goes to: the highest (epoch, since) claim among the streams that are up. */
  owner(shop: string): Conn | undefined {
    let best: Conn | undefined;
    const later = (a: [number, number], b: [number, number]) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
    for (const c of this.conns.values())
      if (c.up && c.claims.has(shop) && (!best || later(c.claims.get(shop)!, best.claims.get(shop)!))) best = c;
    return best;
  }

  send(shop: string, visitor: string, id: string): Promise<Sent> {
    const at = performance.now();
    const conn = this.owner(shop);
    if (!conn) return Promise.resolve({ shop, at, done: at, outcome: 'no-owner' }); // the shim's failure policy: bounce
    const seq = String(++this.seq);
    return new Promise((resolve) => {
      conn.pending.set(seq, (outcome, action) => resolve({ shop, at, done: performance.now(), outcome, action }));
      // Like the shim: the request says when the sender stops waiting.
      conn.call.write({ filter: { seq, hook: 1, host: D, stanza: stanza(shop, visitor, id), deadlineMs: String(Date.now() + 5000) } });
    });
  }

  /** Resolves with the time at which `pred` first held, checked at once and on every WatchList and stream end. */
  until(what: string, pred: () => boolean, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        this.listeners.delete(check);
        clearTimeout(timer);
        resolve(performance.now());
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`${what}: not within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  claimed(label: string, shops: Iterable<string>): boolean {
    const c = this.conns.get(label);
    return !!c?.up && [...shops].every((s) => c.claims.has(s));
  }

  spread(): string {
    return [...this.conns.values()]
      .filter((c) => c.up)
      .map((c) => `${c.label}: ${c.claims.size}`)
      .join(', ');
  }

  private changed() {
    for (const l of [...this.listeners]) l();
  }

  close() {
    for (const c of this.conns.values()) {
      c.call.cancel();
      c.client.close();
    }
  }
}

/**
 * PostgreSQL's CPU seconds so far: the postmaster, its live backends, and (its cutime/cstime) the backends that
 * exited. The harness's serverCpu() counts live processes only, and here backends come and go with the sidecars.
 */
function postgresCpu(): number {
  const port = new URL(store.url).port;
  const read = (pid: number | string, what: string) => {
    try {
      return fs.readFileSync(`/proc/${pid}/${what}`, 'utf8');
    } catch {
      return ''; // gone
    }
  };
  const stat = (pid: number | string) => (read(pid, 'stat').split(') ')[1] ?? '').split(' ').map(Number);
  const master = pidsWithArg(port).find((p) => read(p, 'cmdline').split('\0')[0]!.endsWith('postgres'));
  if (master === undefined) return NaN;
  const f = stat(master);
  let total = (f[11]! + f[12]! + f[13]! + f[14]!) / 100;
  for (const ent of fs.readdirSync('/proc')) if (/^\d+$/.test(ent) && stat(ent)[1] === master) total += cpuSeconds(Number(ent));
  return total;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const bounded = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
};
/** Waits awaited later: if the run fails before that, their timeouts are not unhandled rejections. */
const quiet = (...ps: Promise<unknown>[]) => {
  for (const p of ps) p.catch(() => undefined);
};
const exited = (s: Sidecar) =>
  s.child.exitCode !== null || s.child.signalCode !== null ? Promise.resolve() : new Promise((r) => s.child.once('exit', r));

const shim = new Shim();
let store: BenchStore;
let db: pg.Client;

const configOf = (sidecarId: string) => ({
  sidecarId,
  systemJid: `admin@${D}`,
  store: store.url,
  grpc: { shims: [{ node: NODE, token: TOKEN }] },
  timers: { agentReminderSec: 86_400 }, // only the measured traffic changes state
  shops: SHOPS.map((jid) => ({ jid, name: jid, agents: agentsOf(jid).map((a) => ({ jid: a, maxSessions: 1000 })) })),
});

interface Throughput {
  run: number;
  sidecars: number;
  spread: string;
  count: number;
  rate: number;
  p50: number;
  p99: number;
  cpu: number[]; // per sidecar process
  serverCpu: number;
  genCpu: number;
  verdicts: string;
  commits: string;
}

/** n stanzas from VISITORS new visitors per shop (their first messages, then follow-ups), one window over all streams. */
async function throughput(tag: string, n: number, run: number, sidecars: Sidecar[]): Promise<Throughput> {
  const visitors = SHOPS.length * VISITORS;
  const lat: number[] = [];
  const verdicts = new Map<string, number>();
  const cpu0 = sidecars.map((s) => s.cpu());
  const srv0 = postgresCpu();
  const gen0 = process.cpuUsage();
  const m0 = await Promise.all(sidecars.map((s) => s.metrics()));
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const k = i % visitors;
      const s = await shim.send(SHOPS[k % SHOPS.length]!, `${tag}-v${k}`, `${tag}-${i}`);
      lat.push(s.done - s.at);
      const key = s.outcome === 'ok' ? (['pass', 'rewrite', 'drop'][s.action!] ?? String(s.action)) : s.outcome;
      verdicts.set(key, (verdicts.get(key) ?? 0) + 1);
    }
  };
  await bounded(Promise.all(Array.from({ length: Math.min(WINDOW, n) }, worker)), PHASE_MS, `throughput ${tag}`);
  const secs = (performance.now() - t0) / 1000;
  const gen = process.cpuUsage(gen0);
  const m1 = await Promise.all(sidecars.map((s) => s.metrics()));
  const sorted = lat.sort((a, b) => a - b);
  return {
    run,
    sidecars: sidecars.length,
    spread: shim.spread(),
    count: n,
    rate: n / secs,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    cpu: sidecars.map((s, i) => s.cpu() - cpu0[i]!),
    serverCpu: postgresCpu() - srv0,
    genCpu: (gen.user + gen.system) / 1e6,
    verdicts: [...verdicts].map(([k, v]) => `${k}:${v}`).join(' '),
    commits: m0
      .map((m, i) => {
        const j = journalDelta(m, m1[i]!);
        return `${fmt(j.batches)} (${fmt(j.perBatch, 0)}/commit)`;
      })
      .join(' + '),
  };
}

/** Background traffic during a failover: one stanza every PACE_MS, the shops in turn, a few visitors each. */
function pace(tag: string): () => Promise<Sent[]> {
  const sent: Promise<Sent>[] = [];
  let i = 0;
  const timer = setInterval(() => {
    const k = i % (SHOPS.length * 5);
    sent.push(shim.send(SHOPS[k % SHOPS.length]!, `${tag}-v${k}`, `${tag}-${i++}`));
  }, PACE_MS);
  return () => {
    clearInterval(timer);
    return bounded(Promise.all(sent), EVENT_MS, `${tag}: paced stanzas`);
  };
}

interface Failover {
  event: string;
  run: number;
  letGo: number; // ms until the old owner no longer claimed the moved shops (its WatchList, or its stream closed)
  owned: number; // ms until the new owner's WatchList listed all of them
  heartbeat?: number; // join: ms until the joiner's first heartbeat row in PostgreSQL
  listening?: number; // join: ms until it logged "sidecar listening"
  moved: number;
  sent: number; // stanzas for the moved shops sent between the event and `owned`
  ok: number;
  notOwner: number;
  refused: number;
  noOwner: number;
  lost: number;
  othersNotOk: number; // stanzas for the shops that did not move, in the same window, not ok (expected 0)
}

function tally(sent: Sent[], moved: Set<string>, t0: number, t1: number) {
  const inWindow = sent.filter((s) => s.at >= t0 && s.at <= t1);
  const m = inWindow.filter((s) => moved.has(s.shop));
  const n = (o: Outcome) => m.filter((s) => s.outcome === o).length;
  return {
    moved: moved.size,
    sent: m.length,
    ok: n('ok'),
    notOwner: n('not-owner'),
    refused: n('refused'),
    noOwner: n('no-owner'),
    lost: n('lost'),
    othersNotOk: inWindow.filter((s) => !moved.has(s.shop) && s.outcome !== 'ok').length,
  };
}

/** SIGTERM or SIGKILL of the second sidecar under paced traffic, until the first lists its shops. */
async function stopSecond(signal: 'SIGTERM' | 'SIGKILL', run: number, s2: Sidecar): Promise<Failover> {
  const old = shim.conns.get('s2')!;
  const moved = new Set(old.claims.keys());
  const stopPace = pace(`${signal}${run}`);
  await sleep(300);
  const t0 = performance.now();
  const letGo = shim.until('old owner lets go', () => [...moved].every((s) => !old.claims.has(s)), EVENT_MS);
  const owned = shim.until(`${signal}: s1 owns the shops of s2`, () => shim.claimed('s1', moved), EVENT_MS);
  quiet(letGo, owned);
  s2.child.kill(signal);
  const [tLet, tOwned] = await Promise.all([letGo, owned]);
  await sleep(300);
  const sent = await stopPace();
  await bounded(exited(s2), EVENT_MS, `${signal}: sidecar exit`);
  await s2.stop(); // removes its config dir
  old.client.close();
  const event = signal === 'SIGTERM' ? 'clean stop (SIGTERM)' : 'SIGKILL';
  return { event, run, letGo: tLet - t0, owned: tOwned - t0, ...tally(sent, moved, t0, tOwned) };
}

const holders = async () =>
  (await db.query('SELECT holder FROM consult.sidecars WHERE sidecar = $1', [ID2])).rows.map((r) => r.holder as string);

/** Starts the second sidecar under paced traffic, until it lists its share and the first no longer does. */
async function join(run: number, after: string): Promise<{ s2: Sidecar; ev: Failover }> {
  const before = new Set(await holders());
  const stopPace = pace(`join${run}${after}`);
  await sleep(300);
  const t0 = performance.now();
  const letGo = shim.until('s1 hands over', () => [...SHARE2].every((s) => !shim.conns.get('s1')!.claims.has(s)), 2 * EVENT_MS);
  const owned = shim.until('s2 owns its share', () => shim.claimed('s2', SHARE2), 2 * EVENT_MS);
  quiet(letGo, owned);
  // The joiner's first heartbeat: the lease protocol's part, apart from the process start.
  let polling = true;
  const heartbeat = (async () => {
    while (polling) {
      if ((await holders()).some((h) => !before.has(h))) return performance.now();
      await sleep(20);
    }
    return NaN;
  })();
  let s2: Sidecar;
  try {
    s2 = await startSidecarProcess(configOf(ID2), await freePort());
  } finally {
    polling = false;
  }
  const tListening = performance.now();
  await shim.connect('s2', s2.port);
  const [tHeartbeat, tLet, tOwned] = await Promise.all([heartbeat, letGo, owned]);
  await sleep(300);
  const sent = await stopPace();
  return {
    s2,
    ev: {
      event: `join (${after})`,
      run,
      letGo: tLet - t0,
      owned: tOwned - t0,
      heartbeat: tHeartbeat - t0,
      listening: tListening - t0,
      ...tally(sent, SHARE2, t0, tOwned),
    },
  };
}

const factory = new StoreFactory();
const running = new Set<Sidecar>();
async function cleanup() {
  shim.close();
  await db?.end().catch(() => undefined);
  for (const s of running) await s.stop(); // also removes its config dir
  running.clear();
  await factory.close(); // PostgreSQL and its temp dir
}
/** Time limit: kill the sidecars, stop PostgreSQL, remove the temp dirs, exit. */
function abort(why: string) {
  console.error(`${why}: stopping`);
  for (const s of running) s.child.kill('SIGKILL');
  setTimeout(() => process.exit(1), 25_000).unref();
  void cleanup().finally(() => process.exit(1));
}

async function main() {
  const rows: Throughput[] = [];
  const events: Failover[] = [];
  const watchdog = setTimeout(() => abort(`--max-minutes ${opt['max-minutes']} reached`), Number(opt['max-minutes']) * 60_000);
  watchdog.unref();
  const started = performance.now();
  try {
    store = await factory.open('postgres');
    db = new pg.Client({ connectionString: store.url });
    await db.connect();
    const s1 = await startSidecarProcess(configOf(ID1), await freePort());
    running.add(s1);
    await shim.connect('s1', s1.port);
    await shim.until('s1 owns every shop', () => shim.claimed('s1', SHOPS), EVENT_MS);
    for (let run = 1; run <= REPEAT; run++) {
      console.error(`run ${run}: one sidecar...`);
      // Warm-ups (JIT; the second sidecar is a fresh process every time), not measured.
      await throughput(`w1r${run}`, WARMUP, run, [s1]);
      rows.push(await throughput(`one${run}`, N, run, [s1]));
      console.error(`run ${run}: the second sidecar joins...`);
      let j = await join(run, run === 1 ? 'first start' : 'after SIGKILL');
      running.add(j.s2);
      events.push(j.ev);
      await throughput(`w2r${run}`, WARMUP, run, [s1, j.s2]);
      rows.push(await throughput(`two${run}`, N, run, [s1, j.s2]));
      console.error(`run ${run}: SIGTERM...`);
      events.push(await stopSecond('SIGTERM', run, j.s2));
      running.delete(j.s2);
      j = await join(run, 'after SIGTERM');
      running.add(j.s2);
      events.push(j.ev);
      console.error(`run ${run}: SIGKILL...`);
      events.push(await stopSecond('SIGKILL', run, j.s2));
      running.delete(j.s2);
    }
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
  report(rows, events, (performance.now() - started) / 1000);
}

function report(rows: Throughput[], events: Failover[], seconds: number) {
  console.log(
    `\nscale-out: ${SHOPS.length} shops x ${AGENTS} agents (all online), one private PostgreSQL (fsync=off), sidecar ids ${ID1} / ${ID2} ` +
      `(chosen so that rendezvous hashing splits the shops ${SHOPS.length - SHARE2.size}/${SHARE2.size}), ` +
      `${os.cpus().length}-core machine, load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end, ${fmt(seconds)} s in all`,
  );
  console.log(
    `NOTE: the sidecars, PostgreSQL and this load generator share the same ${os.cpus().length} cores: two sidecars cannot show a 2x gain ` +
      'here. Compare decisions per CPU-second.',
  );
  console.log(
    `\nthroughput: ${fmt(N)} consult stanzas per run from ${VISITORS} new visitors per shop (first messages, then follow-ups), ` +
      `sent to each shop's owner, pipelined with one window of ${WINDOW} over all streams (the same offered load either way)`,
  );
  const cpuSum = (r: Throughput) => r.cpu.reduce((a, b) => a + b, 0);
  console.log(
    table(
      [
        'run',
        'sidecars',
        'shops per sidecar',
        'decisions/s',
        'p50 ms',
        'p99 ms',
        'sidecar CPU s (each)',
        'decisions per sidecar CPU-s',
        'PostgreSQL CPU s',
        'decisions per CPU-s (sidecars + PostgreSQL)',
        'generator CPU s',
        'verdicts',
        'commits (decisions/commit)',
      ],
      rows.map((r) => [
        String(r.run),
        String(r.sidecars),
        r.spread,
        fmt(r.rate),
        fmt(r.p50, 1),
        fmt(r.p99, 1),
        r.cpu.map((c) => fmt(c, 2)).join(' + '),
        fmt(r.count / cpuSum(r)),
        fmt(r.serverCpu, 2),
        fmt(r.count / (cpuSum(r) + r.serverCpu)),
        fmt(r.genCpu, 2),
        r.verdicts,
        r.commits,
      ]),
    ),
  );
  const med = (k: number, f: (r: Throughput) => number) => median(rows.filter((r) => r.sidecars === k).map(f));
  console.log(`\nmedians over ${REPEAT} run(s):`);
  console.log(
    table(
      [
        'sidecars',
        'decisions/s',
        'each run',
        'p50 ms',
        'p99 ms',
        'decisions per sidecar CPU-s',
        'decisions per CPU-s (sidecars + PostgreSQL)',
      ],
      [1, 2].map((k) => [
        String(k),
        fmt(med(k, (r) => r.rate)),
        rows
          .filter((r) => r.sidecars === k)
          .map((r) => fmt(r.rate))
          .join(' / '),
        fmt(
          med(k, (r) => r.p50),
          1,
        ),
        fmt(
          med(k, (r) => r.p99),
          1,
        ),
        fmt(med(k, (r) => r.count / cpuSum(r))),
        fmt(med(k, (r) => r.count / (cpuSum(r) + r.serverCpu))),
      ]),
    ),
  );
  console.log(`two sidecars / one: ${fmt((100 * med(2, (r) => r.rate)) / med(1, (r) => r.rate))} % of the decisions/s (medians)`);

  console.log(
    `\nfailover: paced traffic during each event (one stanza every ${PACE_MS} ms, the shops in turn). ms from the signal (or the ` +
      'spawn of the joining process) until the old owner stopped claiming the moved shops (its WatchList, or its stream ' +
      'closed) and until the new owner listed them all in a WatchList pushed to this stream. Stanzas: those for the moved ' +
      'shops sent in that window; "not owner": refused by a sidecar ("decided by another consult sidecar"); "no owner": ' +
      'bounced here, as the shim does while no connected sidecar claims the shop; "lost": sent on a stream that closed ' +
      'before its verdict (the shim bounces those too).',
  );
  console.log(
    table(
      [
        'event',
        'run',
        'old owner let go ms',
        'new owner lists them ms',
        'joiner: heartbeat / listening ms',
        'shops moved',
        'stanzas sent',
        'ok',
        'not owner',
        'other refusals',
        'no owner',
        'lost',
        'other shops not ok',
      ],
      events.map((e) => [
        e.event,
        String(e.run),
        fmt(e.letGo),
        fmt(e.owned),
        e.heartbeat === undefined ? '' : `${fmt(e.heartbeat)} / ${fmt(e.listening!)}`,
        String(e.moved),
        String(e.sent),
        String(e.ok),
        String(e.notOwner),
        String(e.refused),
        String(e.noOwner),
        String(e.lost),
        String(e.othersNotOk),
      ]),
    ),
  );
  const kinds = [
    ['clean stop (SIGTERM)', (e: Failover) => e.event === 'clean stop (SIGTERM)'],
    ['SIGKILL (expected: lease 5 s + a round <= 1 s)', (e: Failover) => e.event === 'SIGKILL'],
    ['join (from the spawn)', (e: Failover) => e.event.startsWith('join')],
  ] as const;
  console.log('\nmedians:');
  console.log(
    table(
      [
        'event',
        'new owner lists them ms (median)',
        'each',
        'old owner let go ms (median)',
        'not ok stanzas (median)',
        'joiner heartbeat → owned ms (median)',
      ],
      kinds.map(([name, is]) => {
        const es = events.filter(is);
        return [
          name,
          fmt(median(es.map((e) => e.owned))),
          es.map((e) => fmt(e.owned)).join(' / '),
          fmt(median(es.map((e) => e.letGo))),
          fmt(median(es.map((e) => e.sent - e.ok))),
          es[0]?.heartbeat === undefined ? '' : fmt(median(es.map((e) => e.owned - e.heartbeat!))),
        ];
      }),
    ),
  );
}

// Ctrl-C or kill: scripts/ejabberd-node.ts turns SIGINT/SIGTERM into process.exit, so the exit handlers run: the
// harness SIGKILLs the sidecars, test/support/postgres.ts stops PostgreSQL and removes its dir, and this removes
// the sidecars' config dirs.
process.on('exit', () => {
  for (const s of running) fs.rmSync(path.dirname(s.configFile), { recursive: true, force: true });
});
main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
