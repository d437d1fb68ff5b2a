// Benchmark (not a test): what the shim and sidecar cost inside real ejabberd.
// Runs two private ejabberd nodes on loopback, one after the other, with the
// e2e harness: (1) plain ejabberd, no shim; (2) ejabberd with mod_consult and
// the real sidecar process. On each it sends a fixed number of messages through
// @xmpp/client clients and measures sender -> receiver latency (send time kept
// per message/body id in this process, receive time when the receiver's client emits
// the stanza). Two kinds of runs:
//   window N : as fast as possible with at most N messages in flight (throughput)
//   R/s      : paced at a fixed rate (latency under a steady load)
//   npx tsx bench/ejabberd.ts [--messages 5000] [--window 100] [--rates 100,500,1000,2000] [--visitors 10] [--repeat 2]
//                             [--only REGEX on "label: flow name"] [--nagle]
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { xml } from '@xmpp/client';
import { findBeamPids, freePort } from '../scripts/ejabberd-node.js';
import { startEjabberd, type Ejabberd } from '../test/support/ejabberd.js';
import { startSidecar, writeConfig, type SidecarProcess } from '../test/support/sidecar.js';
import { connectClient, type Element, type TestClient } from '../test/support/xmpp.js';
import { cpuSeconds, pidsWithArg, printTable, stats, type Row } from './stats.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    window: { type: 'string', default: '100' },
    rates: { type: 'string', default: '100,500,1000,2000' },
    visitors: { type: 'string', default: '10' },
    only: { type: 'string' },
    nagle: { type: 'boolean', default: false },
    repeat: { type: 'string', default: '2' },
  },
});
const N = Number(opt.messages);
const WINDOW = Number(opt.window);
const RATES = opt.rates!.split(',').map(Number);
const VISITORS = Number(opt.visitors);
const REPEAT = Number(opt.repeat);
const RUN_TIMEOUT_MS = 120_000;
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

const chat = (to: string) => (id: string) =>
  xml('message', { type: 'chat', to, id }, xml('body', {}, `bench ${id}`));
const consult = (id: string, visitor: TestClient) =>
  xml('message', { type: 'consult', to: SHOP, realfrom: visitor.bareJid, realto: `test01@${D}`, channelid: '{"cn":"consult","d":"send","usrType":"usr"}', qchatid: '4', isHiddenMsg: '0' },
    xml('body', { msgType: '1', maType: '6', id }, `bench ${id}`), xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' }));

let runCounter = 0;
/** Processes whose CPU time is reported per message, besides this one (the clients). */
const probe = { ejabberd: [] as number[], sidecar: [] as number[] };
const cpuOf = (pids: number[]) => pids.reduce((s, p) => s + cpuSeconds(p), 0);
const visitorNames = Array.from({ length: VISITORS }, (_, i) => `visitor${i + 1}`);

/** Sends n messages of `flow`, either windowed or paced; resolves when all arrived (and were acked). */
async function run(flow: Flow, n: number, mode: { window: number } | { rate: number }): Promise<Row> {
  const prefix = `r${++runCounter}-`;
  const sentAt = new Map<string, number>();
  const lat: number[] = [];
  let acked = 0;
  let sent = 0;
  const now = () => performance.now();
  let done!: () => void;
  let fail!: (e: Error) => void;
  const finished = new Promise<void>((resolve, reject) => { done = resolve; fail = reject; });
  const check = () => { if (lat.length === n && (!flow.acks || acked === n)) done(); };
  const send = () => {
    const sender = flow.senders[sent % flow.senders.length]!;
    const id = `${prefix}${sent++}`;
    sentAt.set(id, now());
    sender.xmpp.send(flow.stanza(id, sender)).catch((e: Error) => fail(e));
  };
  const onReceive = (el: Element) => {
    if (!el.is('message')) return;
    // ejabberd keeps the message id of plain chat (not body attributes); the shim keeps the consult body id.
    const id = el.getChild('body')?.attrs.id ?? el.attrs.id;
    const t = id === undefined ? undefined : sentAt.get(id);
    if (t === undefined) return;
    sentAt.delete(id!);
    lat.push(now() - t);
    if ('window' in mode) while (sent < n && sent - lat.length < mode.window) send();
    check();
  };
  const onSenderStanza = (el: Element) => {
    if (el.attrs.type === 'mstat' && el.getChild('body')?.attrs.id?.startsWith(prefix)) { acked++; check(); }
    else if (el.attrs.type === 'error') fail(new Error(`error stanza: ${el.toString().slice(0, 500)}`));
  };
  flow.receiver.xmpp.on('stanza', onReceive);
  flow.senders.forEach((c) => c.xmpp.on('stanza', onSenderStanza));
  const timer = setTimeout(() => fail(new Error(`${flow.name}: ${lat.length}/${n} received, ${acked} acked within ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS);
  let pacer: NodeJS.Timeout | undefined;
  const cpu0 = { client: process.cpuUsage(), ejabberd: cpuOf(probe.ejabberd), sidecar: cpuOf(probe.sidecar) };
  const t0 = now();
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
    clearTimeout(timer);
    clearInterval(pacer);
    flow.receiver.xmpp.off('stanza', onReceive);
    flow.senders.forEach((c) => c.xmpp.off('stanza', onSenderStanza));
    // The helper's `received` log is for tests; do not let it grow across runs.
    [flow.receiver, ...flow.senders].forEach((c) => { c.received.length = 0; });
  }
  const secs = (now() - t0) / 1000;
  const how = 'window' in mode ? `window ${mode.window}` : `${mode.rate}/s paced`;
  const us = (s: number) => ((s * 1e6) / n).toFixed(0);
  const client = process.cpuUsage(cpu0.client);
  const cpu = `CPU µs/msg: clients ${us((client.user + client.system) / 1e6)}, ejabberd ${us(cpuOf(probe.ejabberd) - cpu0.ejabberd)}`
    + (probe.sidecar.length ? `, sidecar ${us(cpuOf(probe.sidecar) - cpu0.sidecar)}` : '');
  return { mode: `${flow.name}, ${how}`, ...stats(n, secs, lat), note: cpu };
}

async function scenarios(allFlows: Flow[], rows: Row[], label: string) {
  const flows = allFlows.filter((f) => !opt.only || new RegExp(opt.only).test(`${label}: ${f.name}`));
  for (const f of flows) await run(f, Math.min(500, N), { window: WINDOW }); // warm-up: JIT, sessions, welcome
  for (let r = 1; r <= REPEAT; r++) {
    for (const f of flows) {
      for (const mode of [{ window: WINDOW }, ...RATES.map((rate) => ({ rate }))]) {
        // Paced runs last at most ~5 s: min(N, 5 s worth of messages).
        const row = await run(f, 'rate' in mode ? Math.min(N, mode.rate * 5) : N, mode);
        row.note = `${label} #${r}; ${row.note}`;
        rows.push(row);
        console.error(`  ${row.mode} (${row.note}): ${row.perSecond.toFixed(0)}/s p50 ${row.p50.toFixed(2)} p99 ${row.p99.toFixed(2)} ms`);
      }
    }
  }
}

async function withNode<T>(withShim: boolean, sidecarPort: number | undefined, body: (ej: Ejabberd, connect: (u: string, res: string) => Promise<TestClient>) => Promise<T>): Promise<T> {
  const ej = await startEjabberd({
    domain: D, withShim, // loglevel stays 'info': the harness waits for the 'is started' info line
    ...(withShim && { shimOptions: { sidecar_host: '127.0.0.1', sidecar_port: sidecarPort!, timeout: 500, failure_policy: 'reject' } }),
  });
  const clients: TestClient[] = [];
  probe.ejabberd = findBeamPids(ej.nodeName);
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
    await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
    await ej.stop();
  }
}

async function main() {
  execFileSync('make', ['-s', '-C', path.join(repoRoot, 'erlang-shim'), 'all'], { stdio: 'inherit' });
  const rows: Row[] = [];

  console.error('plain ejabberd (no shim)...');
  await withNode(false, undefined, async (_ej, connect) => {
    const [alice, bob] = await Promise.all([connect('alice', 'bench'), connect('bob', 'bench')]);
    await scenarios([{ name: 'plain chat alice->bob', senders: [alice], receiver: bob, stanza: chat(`bob@${D}`) }], rows, 'no shim');
  });

  console.error('ejabberd + mod_consult + sidecar...');
  const configFile = writeConfig({
    systemJid: `admin@${D}`,
    shops: [{ jid: SHOP, name: 'bench shop', agents: [{ jid: `test01@${D}`, maxSessions: VISITORS }] }],
  });
  let sidecar: SidecarProcess | undefined;
  try {
    sidecar = startSidecar(configFile, await freePort());
    await sidecar.waitForLog('sidecar listening');
    const sc = sidecar;
    probe.sidecar = pidsWithArg(configFile);
    // Ctrl-C / SIGTERM become process.exit (scripts/ejabberd-node.ts, which also stops the nodes): kill the sidecar too.
    process.on('exit', () => probe.sidecar.forEach((pid) => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }));
    await withNode(true, sc.port, async (_ej, connect) => {
      await sc.waitForLog('shim hello');
      const [alice, bob, agent] = await Promise.all([connect('alice', 'bench'), connect('bob', 'bench'), connect('test01', 'pc')]);
      const visitors = await Promise.all(visitorNames.map((v) => connect(v, 'web')));
      await scenarios([
        { name: 'plain chat alice->bob', senders: [alice], receiver: bob, stanza: chat(`bob@${D}`) },
        { name: 'plain chat visitor1->agent', senders: [visitors[0]!], receiver: agent, stanza: chat(`test01@${D}`) },
        { name: 'consult visitor1->shop->agent', senders: [visitors[0]!], receiver: agent, stanza: consult, acks: true },
        { name: `plain chat ${VISITORS} visitors->agent`, senders: visitors, receiver: agent, stanza: chat(`test01@${D}`) },
        { name: `consult ${VISITORS} visitors->shop->agent`, senders: visitors, receiver: agent, stanza: consult, acks: true },
      ], rows, 'shim+sidecar');
    });
  } finally {
    await sidecar?.kill();
  }

  console.log(`\nthrough ejabberd 23.01 on loopback: ${N} messages per windowed run, min(${N}, 5 s worth) per paced run, latency = sender's send() to receiver's client emitting the stanza; ${os.cpus().length} cores shared by ejabberd, sidecar and all clients (one Node process)`);
  printTable(rows);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
