// Benchmark (not a test): the sidecar alone. Starts the real sidecar process
// (src/main.ts) and drives it from this process with a fixed number of consult
// stanzas, once over the bidi FilterStream (pipelined, bounded window) and once
// over unary Filter (bounded concurrency). Prints decisions/s and p50/p99.
//   npx tsx bench/sidecar.ts [--messages 20000] [--visitors 200] [--window 256] [--concurrency 64]
//                            [--erl-callers 64] [--modes stream,unary,erlang] [--cpu-prof DIR]
// With --cpu-prof the sidecar runs under `node --cpu-prof --cpu-prof-dir DIR`;
// the profile is written when the sidecar exits (SIGTERM at the end).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { SessionEvent_Kind, StanzaFilterClient, type SidecarMessage, type Verdict } from '../src/gen/consult/v1/filter.js';
import { freePort } from '../scripts/ejabberd-node.js';
import { writeConfig } from '../test/support/sidecar.js';
import { cpuSeconds, stats, printTable, type Row } from './stats.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    visitors: { type: 'string', default: '200' },
    window: { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '64' },
    modes: { type: 'string', default: 'stream,unary,erlang' },
    'erl-callers': { type: 'string', default: '64' },
    'cpu-prof': { type: 'string' },
  },
});
const N = Number(opt.messages);
const VISITORS = Number(opt.visitors);
const WINDOW = Number(opt.window);
const CONCURRENCY = Number(opt.concurrency);
const D = 'localhost';
const SHOP = `shop_2@${D}`;
const AGENTS = 10;


// What mod_consult forwards: the raw stanza with the server-checked from/to.
const stanza = (i: number) => Buffer.from(
  `<message xmlns='jabber:client' type='consult' to='${SHOP}' from='v${i % VISITORS}@${D}/web' realfrom='v${i % VISITORS}@${D}' realto='test01@${D}' channelid='{"cn":"consult","d":"send","usrType":"usr"}' qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='B${i}'>hello ${i}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`);

function startSidecarProcess(configFile: string, port: number, profDir?: string): { child: ChildProcess; ready: Promise<void> } {
  const prof = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', path.join(repoRoot, 'src/main.ts'), '--config', configFile, '--grpc-port', String(port)], {
    cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => { out += b; if (out.includes('sidecar listening')) resolve(); });
    child.once('exit', (code) => reject(new Error(`sidecar exited (${code}) before listening:\n${out}`)));
    setTimeout(() => reject(new Error('sidecar did not start within 20 s')), 20_000).unref();
  });
  return { child, ready };
}

async function runStream(client: StanzaFilterClient, n: number, offset: number): Promise<Row> {
  const call = client.filterStream();
  const sentAt = new Map<string, bigint>();
  const lat: number[] = [];
  let next = 0;
  let actions = new Map<number, number>();
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream: only ${lat.length}/${n} verdicts within 120 s`)), 120_000);
    const pump = () => {
      while (next < n && sentAt.size < WINDOW) {
        const seq = String(next + 1);
        sentAt.set(seq, process.hrtime.bigint());
        call.write({ filter: { seq, hook: 1, host: D, stanza: stanza(offset + next) } });
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
      if (lat.length === n) { clearTimeout(timer); resolve(); } else pump();
    });
    call.on('error', (e) => { clearTimeout(timer); reject(e); });
    pump();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  call.end();
  call.cancel();
  return { mode: `FilterStream, window ${WINDOW}`, ...stats(n, secs, lat), note: actionNote(actions) };
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
        client.filter({ seq: String(i + 1), hook: 1, host: D, stanza: stanza(offset + i) }, new grpc.Metadata(), { deadline: Date.now() + 30_000 },
          (err, res) => (err ? reject(err) : resolve(res!))));
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      actions.set(v.action, (actions.get(v.action) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { mode: `unary Filter, concurrency ${CONCURRENCY}`, ...stats(n, secs, lat), note: actionNote(actions) };
}

// The real shim client: erlang-shim/test/consult_bench.erl calls consult_grpc:filter/3
// from `callers` Erlang processes (as ejabberd's c2s processes would) over FilterStream.
async function runErlang(port: number, n: number, callers: number): Promise<Row> {
  const shimDir = path.join(repoRoot, 'erlang-shim');
  execFileSync('make', ['-s', '-C', shimDir, 'all', 'test-beams'], { stdio: 'inherit' });
  const out = await new Promise<string>((resolve, reject) => {
    const erl = spawn('erl', ['-noshell', '-pa', path.join(shimDir, 'ebin'), '-pa', path.join(shimDir, 'ebin-test'),
      '-eval', 'consult_bench:main()', '-extra', String(port), String(n), String(callers), String(VISITORS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const killOnExit = () => { if (erl.exitCode === null) erl.kill('SIGKILL'); };
    process.on('exit', killOnExit);
    let text = '';
    erl.stdout.on('data', (b: Buffer) => { text += b; });
    const timer = setTimeout(() => erl.kill('SIGKILL'), 180_000);
    erl.once('exit', (code) => { clearTimeout(timer); process.off('exit', killOnExit); code === 0 ? resolve(text) : reject(new Error(`erl exited ${code}:\n${text}`)); });
  });
  const line = out.split('\n').find((l) => l.startsWith('@@ '));
  if (!line) throw new Error(`consult_bench printed no result:\n${out}`);
  const r = JSON.parse(line.slice(3)) as { count: number; seconds: number; p50: number; p99: number; max: number; failures: number };
  return { mode: `Erlang consult_grpc:filter/3, ${callers} callers`, count: r.count, seconds: r.seconds, perSecond: r.count / r.seconds,
    p50: r.p50, p99: r.p99, max: r.max, note: `failures:${r.failures}` };
}

// Which verdicts came back (the router's choice; e.g. rewrite = relay, drop = relayed via extras).
const actionNote = (m: Map<number, number>) => [...m].map(([a, c]) => `${['pass', 'rewrite', 'drop', 'reject'][a] ?? a}:${c}`).join(' ');

const agentJids = Array.from({ length: AGENTS }, (_, i) => `test${String(i + 1).padStart(2, '0')}@${D}`);

async function main() {
  const configFile = writeConfig({
    systemJid: `admin@${D}`,
    shops: [{ jid: SHOP, name: 'bench shop', agents: agentJids.map((jid) => ({ jid, maxSessions: Math.ceil(VISITORS / AGENTS) + 1 })) }],
  });
  const port = await freePort();
  const { child, ready } = startSidecarProcess(configFile, port, opt['cpu-prof']);
  // Ctrl-C / SIGTERM: scripts/ejabberd-node.ts (imported for freePort) turns them into process.exit.
  process.on('exit', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const rows: Row[] = [];
  try {
    await ready;
    // Agents must be online to be assigned: report their available presence, as the shim would.
    for (const a of agentJids) {
      await new Promise<void>((resolve, reject) => client.notify(
        { kind: SessionEvent_Kind.PRESENCE_SET, jid: `${a}/pc`, show: '', priority: 0, status: '' }, (err) => (err ? reject(err) : resolve())));
    }
    // Warm-up (JIT, sessions for all visitors), not measured.
    await runStream(client, Math.min(2000, N), 10_000_000);
    for (const mode of opt.modes!.split(',')) {
      const cpu0 = cpuSeconds(child.pid!);
      const row = mode === 'unary' ? await runUnary(client, N, 0)
        : mode === 'erlang' ? await runErlang(port, N, Number(opt['erl-callers']))
        : await runStream(client, N, 0);
      const cpu = cpuSeconds(child.pid!) - cpu0;
      row.note = `${row.note}; sidecar CPU ${cpu.toFixed(2)} s = ${(N / cpu).toFixed(0)} decisions per CPU-second`;
      rows.push(row);
    }
  } finally {
    client.close();
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  }
  console.log(`\nsidecar alone: ${N} consult stanzas from ${VISITORS} visitors to 1 shop (${AGENTS} agents), client and sidecar on the same ${os.cpus().length}-core machine`);
  printTable(rows);
  if (opt['cpu-prof']) console.log(`cpu profile of the sidecar written to ${opt['cpu-prof']} (summarize: npx tsx bench/profile-top.ts ${opt['cpu-prof']})`);
}

main().catch((e) => { console.error(e); process.exit(1); });
