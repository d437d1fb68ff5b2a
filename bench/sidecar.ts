// Benchmark (not a test): the sidecar alone, on each store. For every store in --store it
// starts the real sidecar process (src/main.ts) on that store and drives it from this
// process with a fixed number of consult stanzas from visitors whose sessions are open
// (the warm-up opens them): over the bidi FilterStream (pipelined, bounded window) and,
// with --modes, over unary Filter and through the real Erlang shim client. Prints one
// table with all stores side by side: decisions/s, p50/p99, decisions per sidecar
// CPU-second, and each durable store's throughput as a fraction of memory's.
//   npx tsx bench/sidecar.ts [--store memory:,pglite:,postgres] [--modes stream] [--repeat 1]
//                            [--messages 20000] [--visitors 200] [--window 256] [--concurrency 64]
//                            [--erl-callers 64] [--cpu-prof DIR]
// Stores: memory:; pglite: (a fresh temp dir) or pglite:<dir>; postgres (a private PostgreSQL 15 on
// loopback, initdb in a temp dir, fsync=off, as test/support/postgres.ts starts it; a fresh database
// per sidecar) or postgres://… (used as given). With --repeat N the stores take turns N times.
// With --cpu-prof DIR each sidecar runs under `node --cpu-prof`, its profile in DIR/<store>-<run>/
// (summarize: npx tsx bench/profile-top.ts DIR/<store>-<run>).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { SessionEvent_Kind, StanzaFilterClient, type SidecarMessage, type Verdict } from '../src/gen/consult/v1/filter.js';
import { freePort } from '../scripts/ejabberd-node.js';
import { eachStore, fmt, journalDelta, monotonicUs, repoRoot, startSidecarProcess, table, type BenchStore } from './harness.js';
import { stats, type Row } from './stats.js';
import { shimErlArgs } from '../test/support/erl-driver.js';

const { values: opt } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory:,pglite:,postgres' },
    messages: { type: 'string', default: '20000' },
    visitors: { type: 'string', default: '200' },
    window: { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '64' },
    modes: { type: 'string', default: 'stream' },
    repeat: { type: 'string', default: '1' },
    'erl-callers': { type: 'string', default: '64' },
    'cpu-prof': { type: 'string' },
  },
});
const N = Number(opt.messages);
const VISITORS = Number(opt.visitors);
const WINDOW = Number(opt.window);
const CONCURRENCY = Number(opt.concurrency);
const REPEAT = Number(opt.repeat);
const MODES = opt.modes!.split(',');
const D = 'localhost';
const SHOP = `shop_2@${D}`;
const AGENTS = 10;
const PHASE_TIMEOUT_MS = 180_000;
/** Like the shim: each request says when the sender stops waiting (here 5 s, generous for a pipelined window). */
const DEADLINE_MS = 5000;

// What mod_consult forwards: the raw stanza with the server-checked from/to.
const stanza = (i: number) =>
  Buffer.from(
    `<message xmlns='jabber:client' type='consult' to='${SHOP}' from='v${i % VISITORS}@${D}/web' realfrom='v${i % VISITORS}@${D}' realto='test01@${D}' channelid='{&quot;cn&quot;:&quot;consult&quot;,&quot;d&quot;:&quot;send&quot;,&quot;usrType&quot;:&quot;usr&quot;}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='B${i}'>hello ${i}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
  );
const request = (i: number, seq: number) => ({
  seq: String(seq),
  hook: 1,
  host: D,
  stanza: stanza(i),
  deadlineMs: String(Date.now() + DEADLINE_MS),
});

async function runStream(client: StanzaFilterClient, n: number, offset: number): Promise<Row> {
  const call = client.filterStream();
  const sentAt = new Map<string, bigint>();
  const lat: number[] = [];
  let next = 0;
  const actions = new Map<number, number>();
  const t0 = process.hrtime.bigint();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`stream: only ${lat.length}/${n} verdicts within ${PHASE_TIMEOUT_MS / 1000} s`)),
        PHASE_TIMEOUT_MS,
      );
      const pump = () => {
        while (next < n && sentAt.size < WINDOW) {
          const seq = String(next + 1);
          sentAt.set(seq, process.hrtime.bigint());
          call.write({ filter: request(offset + next, next + 1) });
          next++;
        }
      };
      call.on('data', (m: SidecarMessage) => {
        if (!m.verdict) return;
        const t = sentAt.get(m.verdict.seq);
        if (t === undefined) return;
        sentAt.delete(m.verdict.seq);
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
        actions.set(m.verdict.action, (actions.get(m.verdict.action) ?? 0) + 1);
        if (lat.length === n) {
          clearTimeout(timer);
          resolve();
        } else pump();
      });
      call.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      pump();
    });
  } finally {
    call.end();
    call.cancel();
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { mode: `stream, window ${WINDOW}`, ...stats(n, secs, lat), note: actionNote(actions) };
}

async function runUnary(client: StanzaFilterClient, n: number, offset: number): Promise<Row> {
  const lat: number[] = [];
  const actions = new Map<number, number>();
  let next = 0;
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t = process.hrtime.bigint();
      const v = await new Promise<Verdict>((resolve, reject) =>
        client.filter(request(offset + i, i + 1), new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) =>
          err ? reject(err) : resolve(res!),
        ),
      );
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      actions.set(v.action, (actions.get(v.action) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { mode: `unary, ${CONCURRENCY} concurrent`, ...stats(n, secs, lat), note: actionNote(actions) };
}

// The real shim client: erlang-shim/test/consult_bench.erl calls consult_grpc:filter/3 (which sets
// deadline_ms itself) from `callers` Erlang processes, as ejabberd's c2s processes would, over FilterStream.
async function runErlang(port: number, n: number, callers: number): Promise<Row> {
  const shimDir = path.join(repoRoot, 'erlang-shim');
  execFileSync('make', ['-s', '-C', shimDir, 'all', 'test-beams'], { stdio: 'inherit' });
  const out = await new Promise<string>((resolve, reject) => {
    const erl = spawn('erl', shimErlArgs('consult_bench:main()', [String(port), String(n), String(callers), String(VISITORS)]), {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const killOnExit = () => {
      if (erl.exitCode === null) erl.kill('SIGKILL');
    };
    process.on('exit', killOnExit);
    let text = '';
    erl.stdout.on('data', (b: Buffer) => {
      text += b;
    });
    const timer = setTimeout(() => erl.kill('SIGKILL'), PHASE_TIMEOUT_MS);
    erl.once('exit', (code) => {
      clearTimeout(timer);
      process.off('exit', killOnExit);
      code === 0 ? resolve(text) : reject(new Error(`erl exited ${code}:\n${text}`));
    });
  });
  const line = out.split('\n').find((l) => l.startsWith('@@ '));
  if (!line) throw new Error(`consult_bench printed no result:\n${out}`);
  const r = JSON.parse(line.slice(3)) as { count: number; seconds: number; p50: number; p99: number; max: number; failures: number };
  return {
    mode: `erlang consult_grpc, ${callers} callers`,
    count: r.count,
    seconds: r.seconds,
    perSecond: r.count / r.seconds,
    p50: r.p50,
    p99: r.p99,
    max: r.max,
    note: `failures:${r.failures}`,
  };
}

// Which verdicts came back (open sessions: all rewrite = relayed to the agent; reject = deadline, overload…).
const actionNote = (m: Map<number, number>) => [...m].map(([a, c]) => `${['pass', 'rewrite', 'drop', 'reject'][a] ?? a}:${c}`).join(' ');

const agentJids = Array.from({ length: AGENTS }, (_, i) => `test${String(i + 1).padStart(2, '0')}@${D}`);

interface Result extends Row {
  store: string;
  run: number;
  cpu: number; // sidecar CPU seconds
  serverCpu: number; // PostgreSQL server CPU seconds (0 for in-process stores)
  journal: string; // group commits during the phase
}

async function benchStore(store: BenchStore, run: number): Promise<Result[]> {
  const profDir = opt['cpu-prof'] ? path.join(opt['cpu-prof'], `${store.label}-${run}`) : undefined;
  const sidecar = await startSidecarProcess(
    {
      systemJid: `admin@${D}`,
      store: store.url,
      shops: [{ jid: SHOP, name: 'bench shop', agents: agentJids.map((jid) => ({ jid, maxSessions: Math.ceil(VISITORS / AGENTS) + 1 })) }],
    },
    await freePort(),
    profDir,
  );
  const client = new StanzaFilterClient(`127.0.0.1:${sidecar.port}`, grpc.credentials.createInsecure());
  const out: Result[] = [];
  try {
    // Agents must be online to be assigned: report their available presence, as the shim would.
    for (const a of agentJids) {
      await new Promise<void>((resolve, reject) =>
        client.notify({ kind: SessionEvent_Kind.PRESENCE_SET, jid: `${a}/pc`, show: '', priority: 0, status: '' }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    }
    // Warm-up (JIT; opens the sessions of all visitors), not measured.
    const warm = await runStream(client, Math.min(2000, N), 10_000_000);
    console.error(`  ${store.label} #${run} warm-up: ${warm.note}`);
    const windows: Record<string, [number, number]> = {};
    for (const mode of MODES) {
      const cpu0 = sidecar.cpu();
      const srv0 = store.serverCpu();
      const m0 = await sidecar.metrics();
      const start = monotonicUs();
      const row =
        mode === 'unary'
          ? await runUnary(client, N, 0)
          : mode === 'erlang'
            ? await runErlang(sidecar.port, N, Number(opt['erl-callers']))
            : await runStream(client, N, 0);
      windows[row.mode] = [start, monotonicUs()];
      // For bench/profile-top.ts: only these phases count (not startup or warm-up).
      if (profDir) fs.writeFileSync(path.join(profDir, 'windows.json'), JSON.stringify(windows));
      const j = journalDelta(m0, await sidecar.metrics());
      const r: Result = {
        ...row,
        store: store.label,
        run,
        cpu: sidecar.cpu() - cpu0,
        serverCpu: store.serverCpu() - srv0,
        journal: `${fmt(j.batches)} commits, ${fmt(j.perBatch, 1)} decisions/commit, ${fmt(j.writeMs, 2)} ms/write${j.failed ? `, ${j.failed} FAILED` : ''}`,
      };
      console.error(
        `  ${store.label} #${run} ${r.mode}: ${fmt(r.perSecond)}/s p50 ${fmt(r.p50, 1)} p99 ${fmt(r.p99, 1)} ms, ${fmt(N / r.cpu)} per sidecar CPU-s (${r.note}; ${r.journal})`,
      );
      out.push(r);
    }
  } finally {
    client.close();
    await sidecar.stop();
  }
  return out;
}

async function main() {
  const specs = opt.store!.split(',').filter(Boolean);
  const { results, failed } = await eachStore(specs, REPEAT, benchStore);

  console.log(
    `\nsidecar alone: ${fmt(N)} consult stanzas per mode from ${VISITORS} visitors with open sessions, 1 shop (${AGENTS} agents), ` +
      `client and sidecar on the same ${os.cpus().length}-core machine (load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end)`,
  );
  const memoryRate = (mode: string, run: number) =>
    results.find((r) => r.store === 'memory' && r.mode === mode && r.run === run)?.perSecond;
  console.log(
    table(
      [
        'store',
        'run',
        'mode',
        'decisions/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'sidecar CPU s',
        'decisions per sidecar CPU-s',
        'PostgreSQL CPU s',
        'vs memory',
        'verdicts',
        'journal',
      ],
      results.map((r) => {
        const mem = memoryRate(r.mode, r.run);
        return [
          r.store,
          String(r.run),
          r.mode,
          fmt(r.perSecond),
          fmt(r.p50, 2),
          fmt(r.p99, 2),
          fmt(r.max, 1),
          fmt(r.cpu, 2),
          fmt(r.count / r.cpu),
          r.store === 'postgres' ? fmt(r.serverCpu, 2) : '',
          mem && r.store !== 'memory' ? `${fmt((100 * r.perSecond) / mem)} %` : '',
          r.note ?? '',
          r.journal,
        ];
      }),
    ),
  );

  // Medians over the runs (the spread between runs on this machine is large), and the targets on them (a durable store at 80 % of memory's rate, 20,000 decisions per CPU-second).
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const keys = [...new Set(results.map((r) => `${r.store}\n${r.mode}`))];
  const med = keys.map((k) => {
    const rs = results.filter((r) => `${r.store}\n${r.mode}` === k);
    return {
      store: rs[0]!.store,
      mode: rs[0]!.mode,
      runs: rs.length,
      rate: median(rs.map((r) => r.perSecond)),
      perCpu: median(rs.map((r) => r.count / r.cpu)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      rates: rs.map((r) => fmt(r.perSecond)).join(' / '),
    };
  });
  const memMed = (mode: string) => med.find((m) => m.store === 'memory' && m.mode === mode)?.rate;
  console.log(`\nmedians over ${REPEAT} run(s):`);
  console.log(
    table(
      ['store', 'mode', 'decisions/s (median)', 'each run', 'p50 ms', 'p99 ms', 'decisions per sidecar CPU-s', 'vs memory'],
      med.map((m) => {
        const mem = memMed(m.mode);
        return [
          m.store,
          m.mode,
          fmt(m.rate),
          m.rates,
          fmt(m.p50, 1),
          fmt(m.p99, 1),
          fmt(m.perCpu),
          mem && m.store !== 'memory' ? `${fmt((100 * m.rate) / mem)} %` : '',
        ];
      }),
    ),
  );
  const stream = med.filter((m) => m.mode.startsWith('stream'));
  if (stream.length) {
    console.log('\ntargets (stream, open-session traffic, medians):');
    for (const m of stream.filter((x) => x.store !== 'memory')) {
      const mem = memMed(m.mode);
      if (mem)
        console.log(
          `  ${m.store}: ${fmt((100 * m.rate) / mem)} % of memory's decisions/s (target >= 80 %): ${m.rate >= 0.8 * mem ? 'met' : 'MISSED'}`,
        );
    }
    for (const m of stream)
      console.log(
        `  ${m.store}: ${fmt(m.perCpu)} decisions per sidecar CPU-second (target >= 20,000): ${m.perCpu >= 20_000 ? 'met' : 'MISSED'}`,
      );
  }
  if (opt['cpu-prof'])
    console.log(`cpu profiles of the sidecars in ${opt['cpu-prof']}/<store>-<run> (summarize: npx tsx bench/profile-top.ts DIR)`);
  if (failed.length) {
    console.log(`\nFAILED (not in the tables):\n${failed.map((f) => `  ${f}`).join('\n')}`);
    throw new Error(`${failed.length} store run(s) failed`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
