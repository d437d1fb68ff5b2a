// Benchmark (not a test): does a decision cost the same with 200 or 20,000 open sessions, and
// with 10,000 visitors waiting? One shop, many agents (default 21 × maxSessions 1000, all
// reported online with Notify PRESENCE_SET), the real sidecar process on each store, one
// FilterStream that behaves like a shim (Hello, InjectAck for every Inject, deadlineMs on every
// request). For each state it measures, pipelined with a bounded window:
//   new     the first message of a new visitor: a session is opened (welcome + relay); with the
//           queue in place (agents full) the visitor joins the queue instead (ack + position)
//   close   an agent's "/close" (/close at the queued state also hands the freed seat to the head
//           of the queue, whose kept message is then released to the agent in an Inject)
//   open    a message of a visitor whose session is open (relayed to the agent)
// States: 200, 2,000, 20,000 open sessions, then the agents full (agents × maxSessions sessions)
// and 10,000 visitors queued. `new` and `close` run in cycles (--cycle visitors open, then the same
// number close), so the session count moves between L and L + cycle and the queue between Q and
// Q + cycle. Every phase is bounded in count and time.
//   npx tsx bench/scale.ts [--store memory:,pglite:] [--levels 200,2000,20000] [--queued 10000]
//                          [--agents 21] [--max-sessions 1000] [--new 2000] [--cycle 200] [--open 10000]
//                          [--window 256] [--repeat 1] [--warmup 5] [--max-minutes 30] [--cpu-prof DIR]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  SessionEvent_Kind,
  StanzaFilterClient,
  type ShimMessage,
  type SidecarMessage,
  type Verdict,
} from '../src/gen/consult/v1/filter.js';
import { freePort } from '../scripts/ejabberd-node.js';
import { eachStore, fmt, journalDelta, monotonicUs, startSidecarProcess, table, type BenchStore, type Sidecar } from './harness.js';
import { percentile } from './stats.js';

const { values: opt } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory:,pglite:' },
    levels: { type: 'string', default: '200,2000,20000' },
    queued: { type: 'string', default: '10000' },
    agents: { type: 'string', default: '21' },
    'max-sessions': { type: 'string', default: '1000' },
    new: { type: 'string', default: '2000' },
    cycle: { type: 'string', default: '200' },
    open: { type: 'string', default: '10000' },
    window: { type: 'string', default: '256' },
    repeat: { type: 'string', default: '1' },
    warmup: { type: 'string', default: '5' },
    'max-minutes': { type: 'string', default: '30' },
    'cpu-prof': { type: 'string' },
  },
});
const LEVELS = opt.levels!.split(',').map(Number);
const QUEUED = Number(opt.queued);
const AGENTS = Number(opt.agents);
const MAX_SESSIONS = Number(opt['max-sessions']);
const CAPACITY = AGENTS * MAX_SESSIONS;
const NEW = Number(opt.new);
const CYCLE = Number(opt.cycle);
const OPEN = Number(opt.open);
const WINDOW = Number(opt.window);
const PHASE_TIMEOUT_MS = 180_000;
const DEADLINE_MS = 5000;
const D = 'localhost';
const SHOP = `shop_2@${D}`;
const agentJids = Array.from({ length: AGENTS }, (_, i) => `agent${String(i + 1).padStart(3, '0')}@${D}`);

if (Math.max(...LEVELS) + CYCLE > CAPACITY)
  throw new Error(`--agents × --max-sessions (${CAPACITY}) must leave room for the highest level + --cycle`);
// Whole run bounded: a stuck phase must not hold the machine.
setTimeout(() => {
  console.error(`scale bench: over --max-minutes ${opt['max-minutes']}, giving up`);
  process.exit(2);
}, Number(opt['max-minutes']) * 60_000).unref();

let bodyId = 0;
const visitorMsg = (v: string) =>
  Buffer.from(
    `<message xmlns='jabber:client' type='consult' to='${SHOP}' from='${v}@${D}/web' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='B${++bodyId}'>hello ${bodyId}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
  );
const closeMsg = (agent: string, v: string) =>
  Buffer.from(
    `<message xmlns='jabber:client' type='consult' to='${SHOP}' from='${agent}/pc' realto='${v}@${D}'><body id='C${++bodyId}'>/close</body></message>`,
  );
const ACTIONS = ['pass', 'rewrite', 'drop', 'reject'];

interface Phase {
  count: number;
  seconds: number;
  lat: number[];
  actions: Map<string, number>;
  rejects: Map<string, number>;
}

/** One FilterStream used like a shim: Hello, InjectAck for every Inject, verdicts matched by seq. */
class Shim {
  private readonly call: grpc.ClientDuplexStream<ShimMessage, SidecarMessage>;
  private seq = 0;
  private readonly waiting = new Map<string, (v: Verdict) => void>();
  injected = 0;
  private failed?: Error;

  constructor(client: StanzaFilterClient) {
    this.call = client.filterStream();
    this.call.on('data', (m: SidecarMessage) => {
      if (m.verdict) {
        const done = this.waiting.get(m.verdict.seq);
        this.waiting.delete(m.verdict.seq);
        done?.(m.verdict);
      } else if (m.inject) {
        this.injected += m.inject.stanzas.length;
        if (m.inject.id !== '0') this.call.write({ injectAck: { id: m.inject.id } });
      }
    });
    this.call.on('error', (e) => {
      this.failed = e;
    });
    this.call.write({
      hello: { node: 'bench@localhost', hosts: [D], shimVersion: 'bench', clusterNodes: [], features: ['structured-verdict'] },
    });
  }

  /** Sends n stanzas (made by `make(i)`), at most WINDOW unanswered; `seen(i, verdict)` sees each verdict. */
  run(n: number, make: (i: number) => Buffer, seen?: (i: number, v: Verdict) => void): Promise<Phase> {
    const lat: number[] = [];
    const actions = new Map<string, number>();
    const rejects = new Map<string, number>();
    let next = 0;
    let inFlight = 0;
    const t0 = process.hrtime.bigint();
    return new Promise<Phase>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`phase: only ${lat.length}/${n} verdicts within ${PHASE_TIMEOUT_MS / 1000} s`)),
        PHASE_TIMEOUT_MS,
      );
      const pump = () => {
        if (this.failed) {
          clearTimeout(timer);
          reject(this.failed);
          return;
        }
        while (next < n && inFlight < WINDOW) {
          const i = next++;
          const seq = String(++this.seq);
          const sent = process.hrtime.bigint();
          inFlight++;
          this.waiting.set(seq, (v) => {
            inFlight--;
            lat.push(Number(process.hrtime.bigint() - sent) / 1e6);
            const a = ACTIONS[v.action] ?? String(v.action);
            actions.set(a, (actions.get(a) ?? 0) + 1);
            if (a === 'reject') rejects.set(v.error?.condition ?? '?', (rejects.get(v.error?.condition ?? '?') ?? 0) + 1);
            seen?.(i, v);
            if (lat.length === n) {
              clearTimeout(timer);
              resolve({ count: n, seconds: Number(process.hrtime.bigint() - t0) / 1e9, lat, actions, rejects });
            } else pump();
          });
          this.call.write({ filter: { seq, hook: 1, host: D, stanza: make(i), deadlineMs: String(Date.now() + DEADLINE_MS) } });
        }
      };
      if (n === 0) {
        clearTimeout(timer);
        resolve({ count: 0, seconds: 0, lat, actions, rejects });
      } else pump();
    });
  }

  end(): void {
    this.call.end();
    this.call.cancel();
  }
}

/** The agent a relayed message went to (the rewritten stanza's `to`). */
const relayedTo = (v: Verdict) => /\bto='([^']+)'/.exec(v.stanza.toString())?.[1]?.replace(/\/.*$/, '');

interface Result {
  store: string;
  run: number;
  state: string;
  kind: 'new' | 'close' | 'open';
  what: string;
  count: number;
  seconds: number;
  p50: number;
  p99: number;
  cpuUs: number; // sidecar CPU µs per decision
  journal: string;
  note: string;
}

interface Measured extends Phase {
  cpu: number; // sidecar CPU seconds during the phase
  journal: ReturnType<typeof journalDelta>;
}

class Meter {
  readonly results: Result[] = [];
  private readonly windows: Record<string, [number, number]> = {};
  constructor(
    private readonly sidecar: Sidecar,
    private readonly shim: Shim,
    private readonly store: BenchStore,
    private readonly run: number,
    private readonly profDir?: string,
  ) {}

  /** One measured phase: the sidecar's CPU and group commits around Shim.run. */
  async phase(name: string, n: number, make: (i: number) => Buffer, seen?: (i: number, v: Verdict) => void): Promise<Measured> {
    const m0 = await this.sidecar.metrics();
    const cpu0 = this.sidecar.cpu();
    const start = monotonicUs();
    const p = await this.shim.run(n, make, seen);
    const end = monotonicUs();
    const cpu = this.sidecar.cpu() - cpu0;
    this.windows[`${name} ${Object.keys(this.windows).length}`] = [start, end];
    if (this.profDir) fs.writeFileSync(path.join(this.profDir, 'windows.json'), JSON.stringify(this.windows));
    return { ...p, cpu, journal: journalDelta(m0, await this.sidecar.metrics()) };
  }

  /** One row of the table from one or more phases of the same kind. */
  record(state: string, kind: Result['kind'], what: string, phases: Measured[], expect: string): void {
    const lat = phases.flatMap((p) => p.lat).sort((a, b) => a - b);
    const count = phases.reduce((s, p) => s + p.count, 0);
    const seconds = phases.reduce((s, p) => s + p.seconds, 0);
    const cpu = phases.reduce((s, p) => s + p.cpu, 0);
    const batches = phases.reduce((s, p) => s + p.journal.batches, 0);
    const entries = phases.reduce((s, p) => s + p.journal.batches * (p.journal.perBatch || 0), 0);
    const writeMs = phases.reduce((s, p) => s + p.journal.batches * (p.journal.writeMs || 0), 0);
    const failed = phases.reduce((s, p) => s + p.journal.failed, 0);
    const actions = new Map<string, number>();
    const rejects = new Map<string, number>();
    for (const p of phases) {
      for (const [a, c] of p.actions) actions.set(a, (actions.get(a) ?? 0) + c);
      for (const [a, c] of p.rejects) rejects.set(a, (rejects.get(a) ?? 0) + c);
    }
    const verdicts = [...actions].map(([a, c]) => `${a}:${c}`).join(' ');
    const unexpected = (actions.get(expect) ?? 0) !== count;
    const r: Result = {
      store: this.store.label,
      run: this.run,
      state,
      kind,
      what,
      count,
      seconds,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      cpuUs: (1e6 * cpu) / count,
      journal: `${fmt(entries / batches, 1)}/commit, ${fmt(writeMs / batches, 2)} ms${failed ? `, ${failed} FAILED` : ''}`,
      note: `${verdicts}${unexpected ? ` (expected all ${expect})` : ''}${rejects.size ? ` rejects: ${[...rejects].map(([a, c]) => `${a}:${c}`).join(' ')}` : ''}`,
    };
    console.error(
      `  ${r.store} #${r.run} ${state} ${kind}: ${fmt(count / seconds)}/s p50 ${fmt(r.p50, 1)} p99 ${fmt(r.p99, 1)} ms, ${fmt(r.cpuUs)} µs CPU/decision, journal ${r.journal}; ${r.note}`,
    );
    this.results.push(r);
  }
}

async function benchStore(store: BenchStore, run: number): Promise<Result[]> {
  const profDir = opt['cpu-prof'] ? path.join(opt['cpu-prof'], `${store.label}-${run}`) : undefined;
  const sidecar = await startSidecarProcess(
    {
      systemJid: `admin@${D}`,
      store: store.url,
      limits: { queueMax: Math.max(20_000, 2 * (QUEUED + CYCLE)), keptPerVisitor: 100 },
      // No reminders or agents going away during the run: nothing but the measured traffic changes state
      // (the 5 s tick still runs, over every session, as in production).
      timers: { agentReminderSec: 86_400, offlineGraceSec: 3600 },
      shops: [{ jid: SHOP, name: 'bench shop', agents: agentJids.map((jid) => ({ jid, maxSessions: MAX_SESSIONS })) }],
    },
    await freePort(),
    profDir,
  );
  const client = new StanzaFilterClient(`127.0.0.1:${sidecar.port}`, grpc.credentials.createInsecure());
  const shim = new Shim(client);
  const meter = new Meter(sidecar, shim, store, run, profDir);
  try {
    for (const a of agentJids) {
      await new Promise<void>((resolve, reject) =>
        client.notify({ kind: SessionEvent_Kind.PRESENCE_SET, jid: `${a}/pc`, show: '', priority: 0, status: '' }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    }
    const open = new Map<string, string>(); // visitor (local part) → agent, sessions this bench opened and did not close
    const opener = (names: string[]) => (i: number, v: Verdict) => {
      const agent = relayedTo(v);
      if (v.action === 1 && agent) open.set(names[i]!, agent);
    };
    const openSessions = (names: string[]) => shim.run(names.length, (i) => visitorMsg(names[i]!), opener(names));
    const measuredOpen = (name: string, names: string[]) => meter.phase(name, names.length, (i) => visitorMsg(names[i]!), opener(names));
    const closeSessions = async <T extends Phase>(
      names: string[],
      run: (n: number, make: (i: number) => Buffer) => Promise<T>,
    ): Promise<T> => {
      const phase = await run(names.length, (i) => closeMsg(open.get(names[i]!)!, names[i]!));
      for (const n of names) open.delete(n);
      return phase;
    };
    const range = (prefix: string, from: number, to: number) =>
      Array.from({ length: Math.max(0, to - from) }, (_, i) => `${prefix}${from + i}`);

    // Warm-up (JIT), not measured: --warmup × (1,000 sessions opened, 3,000 messages, all closed again).
    for (let w = 0; w < Number(opt.warmup); w++) {
      const warm = range(`w${w}-`, 0, 1000);
      await openSessions(warm);
      await shim.run(3000, (i) => visitorMsg(warm[i % warm.length]!));
      await closeSessions(warm, (n, make) => shim.run(n, make));
    }

    const fill: string[] = []; // long-lived sessions: f0, f1, ...
    const cycles = Math.max(1, Math.round(NEW / CYCLE));
    const openTraffic = async (state: string) => {
      const live = fill.filter((v) => open.has(v));
      const p = await meter.phase(`${state} open`, OPEN, (i) => visitorMsg(live[(i * 7919) % live.length]!));
      meter.record(state, 'open', `message in an open session (${fmt(live.length)} senders)`, [p], 'rewrite');
    };

    for (const level of LEVELS) {
      const more = range('f', fill.length, level);
      if (more.length) {
        const t = await openSessions(more);
        console.error(`  ${store.label} #${run} filled to ${fmt(level)} sessions (${fmt(more.length / t.seconds)}/s)`);
        fill.push(...more);
      }
      const state = `${fmt(level)} open`;
      const opens: Measured[] = [];
      const closes: Measured[] = [];
      for (let c = 0; c < cycles; c++) {
        const names = range(`n${level}-${c}-`, 0, CYCLE);
        opens.push(await measuredOpen(`${state} new`, names));
        closes.push(await closeSessions(names, (n, make) => meter.phase(`${state} close`, n, make)));
      }
      meter.record(state, 'new', 'first message: session opened', opens, 'rewrite');
      meter.record(state, 'close', 'agent /close', closes, 'drop');
      await openTraffic(state);
    }

    if (QUEUED > 0) {
      // Agents full, then QUEUED visitors waiting, each with one kept message.
      const more = range('f', fill.length, CAPACITY);
      const t = await openSessions(more);
      fill.push(...more);
      console.error(`  ${store.label} #${run} filled to ${fmt(CAPACITY)} sessions, agents full (${fmt(more.length / t.seconds)}/s)`);
      const queued = range('q', 0, QUEUED);
      const qt = await shim.run(queued.length, (i) => visitorMsg(queued[i]!));
      console.error(
        `  ${store.label} #${run} ${fmt(QUEUED)} visitors queued (${fmt(QUEUED / qt.seconds)}/s; ${[...qt.actions].map(([a, c]) => `${a}:${c}`).join(' ')})`,
      );
      const state = `full (${fmt(CAPACITY)}) + ${fmt(QUEUED)} queued`;
      const joins: Measured[] = [];
      const closes: Measured[] = [];
      let victims = fill.filter((v) => open.has(v)).reverse();
      for (let c = 0; c < cycles; c++) {
        const names = range(`m${c}-`, 0, CYCLE);
        joins.push(await meter.phase(`${state} new`, names.length, (i) => visitorMsg(names[i]!)));
        // Close as many sessions: each hands its seat to the head of the queue (the queue is back at QUEUED).
        const gone = victims.slice(0, CYCLE);
        victims = victims.slice(CYCLE);
        closes.push(await closeSessions(gone, (n, make) => meter.phase(`${state} close`, n, make)));
      }
      meter.record(state, 'new', 'first message: visitor queued', joins, 'drop');
      meter.record(state, 'close', 'agent /close: queue head served', closes, 'drop');
      await openTraffic(state);
    }
    console.error(
      `  ${store.label} #${run}: ${fmt(shim.injected)} stanzas injected by the sidecar (released kept messages) and acknowledged`,
    );
  } finally {
    shim.end();
    client.close();
    await sidecar.stop();
  }
  return meter.results;
}

async function main() {
  const specs = opt.store!.split(',').filter(Boolean);
  const { results, failed } = await eachStore(specs, Number(opt.repeat), benchStore);

  console.log(
    `\nflatness: 1 shop, ${AGENTS} agents × maxSessions ${MAX_SESSIONS}, window ${WINDOW}; new/close in cycles of ${CYCLE} (${cycles()} per state), ` +
      `${fmt(OPEN)} open-session messages per state; ${os.cpus().length} cores shared by client and sidecar (load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end)`,
  );
  const base = (r: Result) =>
    results.find((x) => x.store === r.store && x.run === r.run && x.kind === r.kind && x.state === `${fmt(LEVELS[0]!)} open`);
  console.log(
    table(
      [
        'store',
        'run',
        'state',
        'decision',
        'count',
        'decisions/s',
        'p50 ms',
        'p99 ms',
        'sidecar CPU µs/decision',
        `vs ${fmt(LEVELS[0]!)} open`,
        'journal',
        'verdicts',
      ],
      results.map((r) => {
        const b = base(r);
        return [
          r.store,
          String(r.run),
          r.state,
          `${r.kind}: ${r.what}`,
          fmt(r.count),
          fmt(r.count / r.seconds),
          fmt(r.p50, 2),
          fmt(r.p99, 2),
          fmt(r.cpuUs),
          b && b !== r ? `${fmt((100 * (r.count / r.seconds)) / (b.count / b.seconds))} %` : '',
          r.journal,
          r.note,
        ];
      }),
    ),
  );
  // Medians over the runs (this machine's run-to-run spread is large), and the target on them.
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const groups = new Map<string, Result[]>();
  for (const r of results) {
    const k = `${r.store}\n${r.state}\n${r.kind}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const med = [...groups.values()].map((rs) => ({
    ...rs[0]!,
    runs: rs.length,
    rate: median(rs.map((r) => r.count / r.seconds)),
    cpuUs: median(rs.map((r) => r.cpuUs)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
    rates: rs.map((r) => fmt(r.count / r.seconds)).join(' / '),
  }));
  const first = (m: (typeof med)[number]) =>
    med.find((x) => x.store === m.store && x.kind === m.kind && x.state === `${fmt(LEVELS[0]!)} open`);
  console.log(`\nmedians over ${Number(opt.repeat)} run(s) per store:`);
  console.log(
    table(
      [
        'store',
        'state',
        'decision',
        'decisions/s (median)',
        'each run',
        `vs ${fmt(LEVELS[0]!)} open`,
        'p50 ms',
        'p99 ms',
        'sidecar CPU µs/decision',
        `CPU vs ${fmt(LEVELS[0]!)} open`,
      ],
      med.map((m) => {
        const b = first(m);
        return [
          m.store,
          m.state,
          `${m.kind}: ${m.what}`,
          fmt(m.rate),
          m.rates,
          b && b !== m ? `${fmt((100 * m.rate) / b.rate)} %` : '',
          fmt(m.p50, 1),
          fmt(m.p99, 1),
          fmt(m.cpuUs),
          b && b !== m ? `${fmt((100 * m.cpuUs) / b.cpuUs)} %` : '',
        ];
      }),
    ),
  );
  console.log(
    `\ntarget: new-session and open-session decisions/s flat within 20 % from ${fmt(LEVELS[0]!)} to ${fmt(LEVELS[LEVELS.length - 1]!)} open sessions and with ${fmt(QUEUED)} queued (medians; close shown for information):`,
  );
  for (const store of [...new Set(med.map((m) => m.store))]) {
    for (const kind of ['new', 'open', 'close'] as const) {
      const rows = med.filter((m) => m.store === store && m.kind === kind);
      const b = rows[0];
      if (!b) continue;
      const ratios = rows.map((r) => r.rate / b.rate);
      const flat = ratios.every((x) => x >= 0.8 && x <= 1.2);
      console.log(
        `  ${store} ${kind}: ${rows.map((r, i) => `${r.state} ${fmt(r.rate)}/s (${fmt(100 * ratios[i]!)} %)`).join(', ')}: ${kind === 'close' ? '' : flat ? 'met (flat)' : 'MISSED (not flat)'}`,
      );
    }
  }
  if (opt['cpu-prof'])
    console.log(
      `cpu profiles in ${opt['cpu-prof']}/<store>-<run> (npx tsx bench/profile-top.ts DIR; windows.json holds the measured phases)`,
    );
  if (failed.length) {
    console.log(`\nFAILED (not in the tables):\n${failed.map((f) => `  ${f}`).join('\n')}`);
    throw new Error(`${failed.length} store run(s) failed`);
  }
}

const cycles = () => Math.max(1, Math.round(NEW / CYCLE));

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
