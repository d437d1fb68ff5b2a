// Benchmark (not a test): what the shim and sidecar cost inside real ejabberd.
// Runs two private ejabberd nodes on loopback, one after the other, with the
// e2e harness: (1) plain ejabberd, no shim; (2) ejabberd with mod_consult and
// the real sidecar process. On each it sends a fixed number of messages through
// @xmpp/client clients and measures sender -> receiver latency (send time kept
// per message/body id in this process, receive time when the receiver's client emits
// the stanza). Two kinds of runs:
//   window N : as fast as possible with at most N messages in flight (throughput)
//   R/s      : paced at a fixed rate (latency under a steady load)
// Nothing is lost silently: a run ends when every message arrived (and, for consult, was acked), 30 s
// after its last send, or after 30 s without progress; bounces (error stanzas), messages that neither
// arrived nor bounced (lost) and messages a stalled windowed run never sent are reported.
//   npx tsx bench/ejabberd.ts [--messages 5000] [--window 100] [--rates 100,500,1000,2000] [--duration 5] [--visitors 10]
//                             [--repeat 2] [--store pglite:] [--only REGEX on "label: flow name"] [--nagle] [--cpu-prof DIR]
//                             [--commit-delay-ms N (the sidecar's commitDelayMs; default: its own default)]
//                             [--erl-flags '+sbwt none …' (both nodes' VM flags, e.g. without scheduler busy-waiting)]
// --duration: seconds per paced run (rate × duration messages). --store: the sidecar's store, as in
// bench/sidecar.ts (default pglite:, a fresh temp dir, like config/consult.example.json's pglite:.run/pglite).
// The no-shim node is only started when --only leaves one of its flows. --cpu-prof DIR: the sidecar runs
// under `node --cpu-prof` (profile in DIR when it exits; DIR/windows.json marks the measured runs for
// bench/profile-top.ts).
// The target run (2,000 consult msg/s at p99 under 50 ms): --visitors 20 --rates 2000 --duration 10 --only 'shim.*20 visitors' --repeat 1
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { xml } from '@xmpp/client';
import { findBeamPids, freePort } from '../scripts/ejabberd-node.js';
import { startEjabberd, type Ejabberd } from '../test/support/ejabberd.js';
import { connectClient, type Element, type TestClient } from '../test/support/xmpp.js';
import { decisionDelta, fmt, journalDelta, monotonicUs, startSidecarProcess, StoreFactory, table, type Sidecar } from './harness.js';
import { cpuSeconds, printTable, stats, type Row } from './stats.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    window: { type: 'string', default: '100' },
    rates: { type: 'string', default: '100,500,1000,2000' },
    duration: { type: 'string', default: '5' },
    store: { type: 'string', default: 'pglite:' },
    'cpu-prof': { type: 'string' },
    visitors: { type: 'string', default: '10' },
    only: { type: 'string' },
    nagle: { type: 'boolean', default: false },
    repeat: { type: 'string', default: '2' },
    'commit-delay-ms': { type: 'string' },
    'erl-flags': { type: 'string' },
  },
});
const N = Number(opt.messages);
const WINDOW = Number(opt.window);
const RATES = opt.rates!.split(',').map(Number);
const DURATION = Number(opt.duration);
const VISITORS = Number(opt.visitors);
const REPEAT = Number(opt.repeat);
/**
 * A run ends GRACE_MS after its last send, or after GRACE_MS without any arrival, ack or bounce (a windowed run
 * whose receiver went away would otherwise wait forever); what did not arrive counts as lost, what was never
 * sent as not sent.
 */
const GRACE_MS = 30_000;
const D = 'localhost';
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';

interface Flow {
  name: string;
  /** Messages are sent round-robin from these clients. */
  senders: TestClient[];
  receiver: TestClient;
  stanza(id: string, sender: TestClient): Element;
  /** Consult: the sender must also get one mstat ack per message. */
  acks?: boolean;
}

const chat = (to: string) => (id: string) => xml('message', { type: 'chat', to, id }, xml('body', {}, `bench ${id}`));
const consult = (id: string, visitor: TestClient) =>
  xml(
    'message',
    {
      type: 'consult',
      to: SHOP,
      realfrom: visitor.bareJid,
      realto: `test01@${D}`,
      channelid: '{"cn":"consult","d":"send","usrType":"usr"}',
      qchatid: '4',
      isHiddenMsg: '0',
    },
    xml('body', { msgType: '1', maType: '6', id }, `bench ${id}`),
    xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' }),
  );

let runCounter = 0;
const profWindows: Record<string, [number, number]> = {};
/** Processes whose CPU time is reported per message, besides this one (the clients). */
const probe = {
  ejabberd: [] as number[],
  sidecar: [] as number[],
  metrics: undefined as undefined | (() => Promise<Map<string, number>>),
  /** The shim's time per stage so far (ejabberdctl consult_status; consult_timing.erl), with the shim only. */
  shim: undefined as undefined | (() => Promise<ShimStages>),
};

/** Per stage of consult_timing: how many stanzas, and their summed µs. */
type ShimStages = Map<string, { n: number; us: number }>;
/** The "mean time per consult stanza" lines of consult_status, e.g. `  round trip:     812.0 µs (10)`. */
function shimStages(statusText: string): ShimStages {
  const out: ShimStages = new Map();
  for (const m of statusText.matchAll(/^ {2}(to XML|request out|round trip|verdict in|applied): +([\d.]+) us \((\d+)\)$/gm))
    out.set(m[1], { n: Number(m[3]), us: Number(m[2]) * Number(m[3]) });
  return out;
}
/** Mean µs per stanza of each stage between two readings. */
function shimDelta(a: ShimStages, b: ShimStages): string {
  const parts: string[] = [];
  for (const [stage, after] of b) {
    const before = a.get(stage) ?? { n: 0, us: 0 };
    const n = after.n - before.n;
    if (n > 0) parts.push(`${stage} ${fmt((after.us - before.us) / n, 1)}`);
  }
  return parts.length ? `; in the shim, µs per stanza: ${parts.join(', ')}` : '';
}
const cpuOf = (pids: number[]) => pids.reduce((s, p) => s + cpuSeconds(p), 0);
const visitorNames = Array.from({ length: VISITORS }, (_, i) => `visitor${i + 1}`);

interface RunRow extends Row {
  flow: string;
  how: string;
  label: string;
  repeat: number;
  sent: number;
  lost: number;
  notSent: number;
  acksMissing: number;
  errors: number;
}

/** Sends n messages of `flow`, either windowed or paced; resolves when all arrived (and were acked), or as GRACE_MS says. */
async function run(flow: Flow, n: number, mode: { window: number } | { rate: number }): Promise<RunRow> {
  const prefix = `r${++runCounter}-`;
  const sentAt = new Map<string, number>();
  const lat: number[] = [];
  let acked = 0;
  let sent = 0;
  const errors = new Map<string, number>();
  const now = () => performance.now();
  let done!: () => void;
  let fail!: (e: Error) => void;
  const finished = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  let lastEvent = now();
  const check = () => {
    lastEvent = now();
    if (lat.length === n && (!flow.acks || acked === n)) done();
  };
  let grace: NodeJS.Timeout | undefined;
  const afterLastSend = () => {
    if (sent === n && !grace) grace = setTimeout(done, GRACE_MS);
  };
  const stall = setInterval(() => {
    if (now() - lastEvent > GRACE_MS) done();
  }, 1000);
  const send = () => {
    const sender = flow.senders[sent % flow.senders.length]!;
    const id = `${prefix}${sent++}`;
    sentAt.set(id, now());
    sender.xmpp.send(flow.stanza(id, sender)).catch((e: Error) => fail(e));
    afterLastSend();
  };
  const onReceive = (el: Element) => {
    if (!el.is('message')) return;
    // ejabberd keeps the message id of plain chat (not body attributes); the shim keeps the consult body id.
    const id = el.getChild('body')?.attrs.id ?? el.attrs.id;
    const t = id === undefined ? undefined : sentAt.get(id);
    if (t === undefined) return;
    sentAt.delete(id!);
    lat.push(now() - t);
    if ('window' in mode) while (sent < n && sent - lat.length - errorCount() < mode.window) send();
    check();
  };
  const errorCount = () => [...errors.values()].reduce((a, b) => a + b, 0);
  const errorId = (el: Element): string | undefined => el.attrs.id ?? el.getChild('body')?.attrs.id;
  const onSenderStanza = (el: Element) => {
    if (el.attrs.type === 'mstat' && el.getChild('body')?.attrs.id?.startsWith(prefix)) {
      acked++;
      check();
    } else if (el.attrs.type === 'error' && (errorId(el) ?? prefix).startsWith(prefix)) {
      // not a late bounce of an earlier run
      // A bounce (the shim's timeout, a reject): counted, and in windowed runs it frees its slot.
      const condition = el.getChild('error')?.children.find((c) => typeof c !== 'string' && (c as Element).name !== 'text') as
        | Element
        | undefined;
      const k = condition?.name ?? 'unknown';
      errors.set(k, (errors.get(k) ?? 0) + 1);
      lastEvent = now();
      if ('window' in mode) while (sent < n && sent - lat.length - errorCount() < mode.window) send();
    }
  };
  flow.receiver.xmpp.on('stanza', onReceive);
  for (const c of flow.senders) c.xmpp.on('stanza', onSenderStanza);
  let pacer: NodeJS.Timeout | undefined;
  const m0 = probe.metrics ? await probe.metrics() : undefined;
  const shim0 = probe.shim ? await probe.shim() : undefined;
  const cpu0 = { client: process.cpuUsage(), ejabberd: cpuOf(probe.ejabberd), sidecar: cpuOf(probe.sidecar) };
  const t0 = now();
  lastEvent = t0;
  const start = monotonicUs();
  try {
    if ('window' in mode) {
      while (sent < n && sent < mode.window) send();
    } else {
      // Every ms, send what is due so far at the fixed rate.
      pacer = setInterval(() => {
        const due = Math.min(n, Math.floor(((now() - t0) * mode.rate) / 1000));
        while (sent < due) send();
        if (sent === n) clearInterval(pacer);
      }, 1);
    }
    await finished;
  } finally {
    clearTimeout(grace);
    clearInterval(stall);
    clearInterval(pacer);
    flow.receiver.xmpp.off('stanza', onReceive);
    for (const c of flow.senders) c.xmpp.off('stanza', onSenderStanza);
    // The helper's `received` log is for tests; do not let it grow across runs.
    [flow.receiver, ...flow.senders].forEach((c) => {
      c.received.length = 0;
    });
  }
  if (opt['cpu-prof'] && probe.sidecar.length) {
    profWindows[`${flow.name}, ${'window' in mode ? `window ${mode.window}` : `${mode.rate}/s`} ${Object.keys(profWindows).length}`] = [
      start,
      monotonicUs(),
    ];
    fs.writeFileSync(path.join(opt['cpu-prof'], 'windows.json'), JSON.stringify(profWindows));
  }
  const notSent = n - sent;
  const lost = sent - lat.length - errorCount(); // neither arrived nor bounced
  // Throughput over the time until the last arrival or ack (not the grace wait when some were lost).
  const secs = Math.max(lastEvent - t0, 1) / 1000;
  const how = 'window' in mode ? `window ${mode.window}` : `${mode.rate}/s paced`;
  const us = (s: number) => ((s * 1e6) / n).toFixed(0);
  const client = process.cpuUsage(cpu0.client);
  const cpu =
    `CPU µs/msg: clients ${us((client.user + client.system) / 1e6)}, ejabberd ${us(cpuOf(probe.ejabberd) - cpu0.ejabberd)}` +
    (probe.sidecar.length ? `, sidecar ${us(cpuOf(probe.sidecar) - cpu0.sidecar)}` : '');
  let inSidecar = '';
  if (m0) {
    const m1 = await probe.metrics!();
    const dd = decisionDelta(m0, m1);
    const j = journalDelta(m0, m1);
    if (dd.count)
      inSidecar = `; in the sidecar: ${dd.count} decisions, mean ${fmt(dd.meanMs, 2)} ms, p99 <= ${fmt(dd.p99Ms, 1)} ms, ${fmt(j.perBatch, 1)} decisions/commit, ${fmt(j.writeMs, 2)} ms/write`;
  }
  if (shim0) inSidecar += shimDelta(shim0, await probe.shim!());
  const loss =
    `received ${lat.length}/${n}${flow.acks ? `, acked ${acked}` : ''}${errors.size ? `, bounced ${[...errors].map(([k, c]) => `${k}:${c}`).join(' ')}` : ''}` +
    `${lost ? `, ${lost} lost` : ''}${notSent ? `, ${notSent} not sent (stalled)` : ''}`;
  return {
    // count and msg/s: what arrived (a lost message is not throughput).
    mode: `${flow.name}, ${how}`,
    ...stats(lat.length, secs, lat),
    note: `${loss}; ${cpu}${inSidecar}`,
    flow: flow.name,
    how,
    label: '',
    repeat: 0,
    sent,
    lost,
    notSent,
    acksMissing: flow.acks ? sent - acked : 0,
    errors: errorCount(),
  };
}

const selected = (label: string, flows: Flow[]) => flows.filter((f) => !opt.only || new RegExp(opt.only).test(`${label}: ${f.name}`));

async function scenarios(flows: Flow[], rows: RunRow[], label: string) {
  for (const f of flows) await run(f, Math.min(500, N), { window: WINDOW }); // warm-up: JIT, sessions, welcome
  for (let r = 1; r <= REPEAT; r++) {
    for (const f of flows) {
      for (const mode of [{ window: WINDOW }, ...RATES.map((rate) => ({ rate }))]) {
        // Paced runs: rate × --duration messages.
        const row = await run(f, 'rate' in mode ? Math.round(mode.rate * DURATION) : N, mode);
        Object.assign(row, { label, repeat: r });
        row.note = `${label} #${r}; ${row.note}`;
        rows.push(row);
        console.error(`  ${row.mode} (${row.note}): ${row.perSecond.toFixed(0)}/s p50 ${row.p50.toFixed(2)} p99 ${row.p99.toFixed(2)} ms`);
      }
    }
  }
}

async function withNode<T>(
  withShim: boolean,
  sidecarPort: number | undefined,
  body: (ej: Ejabberd, connect: (u: string, res: string) => Promise<TestClient>) => Promise<T>,
): Promise<T> {
  const ej = await startEjabberd({
    domain: D,
    withShim, // loglevel stays 'info': the harness waits for the 'is started' info line
    ...(opt['erl-flags'] ? { erlFlags: opt['erl-flags'] } : {}),
    ...(withShim && { shimOptions: { sidecar_host: '127.0.0.1', sidecar_port: sidecarPort!, timeout: 500, failure_policy: 'reject' } }),
  });
  const clients: TestClient[] = [];
  probe.ejabberd = findBeamPids(ej.nodeName);
  probe.shim = withShim ? async () => shimStages((await ej.ctl('consult_status')).stdout) : undefined;
  try {
    await Promise.all(['alice', 'bob', 'shop_2', 'test01', ...visitorNames].map((u) => ej.register(u, PASSWORD)));
    const connect = async (username: string, resource: string) => {
      const c = await connectClient({ service: `xmpp://127.0.0.1:${ej.c2sPort}`, domain: D, username, password: PASSWORD, resource });
      clients.push(c);
      // @xmpp/client leaves Nagle on: with delayed ACKs that adds ~20-40 ms to a
      // lone sender's consult round trips (measured), a client-side cost. We turn it
      // off (TCP_NODELAY) unless --nagle keeps the library default.
      if (!opt.nagle) (c.xmpp as unknown as { socket: import('node:net').Socket }).socket.setNoDelay(true);
      return c;
    };
    return await body(ej, connect);
  } finally {
    // A client stopped while ejabberd still delivers a backlog (lost-message runs) gets data after its parser
    // is gone, and @xmpp/connection throws from the socket's data handler: ignore that during teardown only.
    const ignore = (e: Error) => {
      if (!/@xmpp\/connection/.test(e.stack ?? '')) throw e;
    };
    process.on('uncaughtException', ignore);
    try {
      await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
      await ej.stop();
    } finally {
      setTimeout(() => process.off('uncaughtException', ignore), 1000).unref();
    }
  }
}

async function main() {
  execFileSync('make', ['-s', '-C', path.join(repoRoot, 'erlang-shim'), 'all'], { stdio: 'inherit' });
  const rows: RunRow[] = [];
  const noShimFlows = (alice?: TestClient, bob?: TestClient): Flow[] => [
    { name: 'plain chat alice->bob', senders: [alice!], receiver: bob!, stanza: chat(`bob@${D}`) },
  ];

  if (selected('no shim', noShimFlows()).length) {
    console.error('plain ejabberd (no shim)...');
    await withNode(false, undefined, async (_ej, connect) => {
      const [alice, bob] = await Promise.all([connect('alice', 'bench'), connect('bob', 'bench')]);
      await scenarios(selected('no shim', noShimFlows(alice, bob)), rows, 'no shim');
    });
  }

  const factory = new StoreFactory();
  const store = await factory.open(opt.store!);
  console.error(`ejabberd + mod_consult + sidecar on ${store.url.replace(/\/\/[^@/]*@/, '//')}...`);
  let sidecar: Sidecar | undefined;
  try {
    sidecar = await startSidecarProcess(
      {
        systemJid: `admin@${D}`,
        store: store.url,
        ...(opt['commit-delay-ms'] !== undefined ? { commitDelayMs: Number(opt['commit-delay-ms']) } : {}),
        shops: [{ jid: SHOP, name: 'bench shop', agents: [{ jid: `test01@${D}`, maxSessions: Math.max(5, VISITORS) }] }],
      },
      await freePort(),
      opt['cpu-prof'],
    );
    const sc = sidecar;
    probe.sidecar = [sc.child.pid!];
    probe.metrics = () => sc.metrics();
    await withNode(true, sc.port, async (_ej, connect) => {
      // The shim connects with backoff: wait until its stream is open.
      for (let i = 0; i < 300 && ((await sc.metrics()).get('consult_shim_connections') ?? 0) < 1; i++)
        await new Promise((r) => setTimeout(r, 100));
      const [alice, bob, agent] = await Promise.all([connect('alice', 'bench'), connect('bob', 'bench'), connect('test01', 'pc')]);
      const visitors = await Promise.all(visitorNames.map((v) => connect(v, 'web')));
      await scenarios(
        selected('shim+sidecar', [
          { name: 'plain chat alice->bob', senders: [alice], receiver: bob, stanza: chat(`bob@${D}`) },
          { name: 'plain chat visitor1->agent', senders: [visitors[0]!], receiver: agent, stanza: chat(`test01@${D}`) },
          { name: 'consult visitor1->shop->agent', senders: [visitors[0]!], receiver: agent, stanza: consult, acks: true },
          { name: `plain chat ${VISITORS} visitors->agent`, senders: visitors, receiver: agent, stanza: chat(`test01@${D}`) },
          { name: `consult ${VISITORS} visitors->shop->agent`, senders: visitors, receiver: agent, stanza: consult, acks: true },
        ]),
        rows,
        'shim+sidecar',
      );
    });
  } finally {
    await sidecar?.stop();
    await store.cleanup();
    await factory.close();
  }

  console.log(
    `\nthrough ejabberd 23.01 on loopback, sidecar on ${opt.store}: ${N} messages per windowed run, rate × ${DURATION} s per paced run, ` +
      `latency = sender's send() to receiver's client emitting the stanza; ${os.cpus().length} cores shared by ejabberd, sidecar and all clients (one Node process); ` +
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end`,
  );
  printTable(rows);

  // Consult beside plain chat from the same visitors to the same agent, same node, same run.
  const pairs: string[][] = [];
  for (const r of rows.filter((x) => x.flow.startsWith('consult ') && x.how.endsWith('paced'))) {
    const plain = rows.find(
      (x) =>
        x.label === r.label &&
        x.repeat === r.repeat &&
        x.how === r.how &&
        x.flow === r.flow.replace(/^consult (.*)->shop->agent$/, 'plain chat $1->agent'),
    );
    pairs.push([
      r.flow.replace(/^consult /, '').replace(/->shop->agent$/, ''),
      `#${r.repeat}`,
      r.how,
      `${fmt(r.perSecond)}/s`,
      `${fmt(r.p50, 2)} / ${fmt(r.p99, 2)}`,
      plain ? `${fmt(plain.p50, 2)} / ${fmt(plain.p99, 2)}` : 'not run',
      plain ? fmt(r.p99 - plain.p99, 2) : '',
      `${r.lost} lost, ${r.errors} bounced, ${r.notSent} not sent, ${r.acksMissing} acks missing`,
      plain ? `${plain.lost} lost, ${plain.errors} bounced, ${plain.notSent} not sent` : '',
    ]);
  }
  if (pairs.length) {
    console.log('\nconsult vs plain chat (same senders and agent, same run):');
    console.log(
      table(
        [
          'senders',
          'run',
          'rate',
          'consult achieved',
          'consult p50 / p99 ms',
          'plain p50 / p99 ms',
          'added p99 ms',
          'consult loss',
          'plain loss',
        ],
        pairs,
      ),
    );
  }
  const target = rows.filter((x) => x.flow === `consult ${VISITORS} visitors->shop->agent` && x.how === '2000/s paced');
  for (const r of target) {
    const ok = r.p99 < 50 && r.lost === 0 && r.acksMissing === 0 && r.errors === 0 && r.notSent === 0;
    console.log(
      `target: consult p99 < 50 ms at 2,000 msg/s from ${VISITORS} visitors for ${DURATION} s, zero loss (run #${r.repeat}): ` +
        `p99 ${fmt(r.p99, 1)} ms, achieved ${fmt(r.perSecond)}/s, ${r.lost} lost, ${r.errors} bounced, ${r.notSent} not sent: ${ok ? 'met' : 'MISSED'}`,
    );
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
