// Prints the top self-time functions and modules of a V8 .cpuprofile (the largest in a dir = the
// main thread, or a file), and the top total (self + callees) times of the project's own functions.
//   npx tsx bench/profile-top.ts DIR_OR_FILE [N] [--all | --phase REGEX]
// The benches write DIR/windows.json ({ phase: [startUs, endUs] }, monotonic µs like the profile's
// timestamps); then only samples inside those measured phases count (startup, PGlite's initdb and
// the warm-up are left out), or only those of the phases whose name matches --phase REGEX.
// --all counts every sample.
import fs from 'node:fs';
import path from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const all = args.includes('--all');
const phaseAt = args.indexOf('--phase');
const phase = phaseAt >= 0 ? new RegExp(args.splice(phaseAt, 2)[1]!) : undefined;
const [arg, topArg] = args.filter((a) => !a.startsWith('--'));
if (!arg) throw new Error('usage: profile-top.ts DIR_OR_FILE [N] [--all]');
const top = Number(topArg ?? 25);
const isDir = fs.statSync(arg).isDirectory();
const file = isDir
  ? fs
      .readdirSync(arg)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => path.join(arg, f))
      .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]! // the main thread (tsx adds a loader thread)
  : arg;
const windowsFile = path.join(isDir ? arg : path.dirname(arg), 'windows.json');
const windows: [number, number][] =
  !all && fs.existsSync(windowsFile)
    ? Object.entries(JSON.parse(fs.readFileSync(windowsFile, 'utf8')) as Record<string, [number, number]>)
        .filter(([name]) => !phase || phase.test(name))
        .map(([, w]) => w)
    : [];
if (phase && windows.length === 0) throw new Error(`no phase in ${windowsFile} matches ${phase}`);
const counted = (t: number) => windows.length === 0 || windows.some(([a, b]) => t >= a && t <= b);

const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// file:///…/<checkout>/src/x.ts → src/x.ts (any checkout or worktree); the built dist/x.js is named by its source.
const local = (url: string) =>
  url.replace(/^file:\/\/.*?\/(?=(src|dist|bench|scripts|test)\/)/, '').replace(/^dist\/(.*)\.js$/, 'src/$1.ts');
const where = (f: Node['callFrame']) => (f.url ? `${local(f.url.replace(/^.*node_modules\//, ''))}:${f.lineNumber + 1}` : '');
const keyOf = (f: Node['callFrame']) => `${f.functionName || '(anonymous)'} ${where(f)}`.trim();
const moduleOf = (f: Node['callFrame']) =>
  !f.url
    ? `(${f.functionName || 'native'})`
    : f.url.includes('node_modules/')
      ? f.url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1')
      : f.url.startsWith('node:')
        ? 'node internals'
        : f.url.startsWith('wasm:')
          ? 'wasm (PGlite)'
          : local(f.url);
const own = (f: Node['callFrame']) => f.url.startsWith('file:') && !f.url.includes('node_modules/') && local(f.url).startsWith('src/');

const self = new Map<string, number>();
const byModule = new Map<string, number>();
const total = new Map<string, number>(); // project functions: self + everything they called
let sampled = 0;
let t = prof.startTime;
prof.samples.forEach((id, i) => {
  const dt = prof.timeDeltas[i] ?? 0;
  t += dt;
  if (!counted(t)) return;
  sampled += dt;
  const f = byId.get(id)!.callFrame;
  self.set(keyOf(f), (self.get(keyOf(f)) ?? 0) + dt);
  byModule.set(moduleOf(f), (byModule.get(moduleOf(f)) ?? 0) + dt);
  const seen = new Set<string>();
  for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
    const cf = byId.get(n)!.callFrame;
    if (!own(cf)) continue;
    const k = keyOf(cf);
    if (seen.has(k)) continue;
    seen.add(k);
    total.set(k, (total.get(k) ?? 0) + dt);
  }
});
const pct = (us: number) => `${((100 * us) / sampled).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(6)} ms`;
console.log(
  `${file}: ${(sampled / 1e6).toFixed(2)} s sampled${windows.length ? ` in the ${windows.length} measured phase(s) of ${windowsFile}` : ' (all of it)'}`,
);
console.log('\nself time:');
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`);
console.log('\nby module (self time):');
for (const [k, us] of [...byModule].sort((a, b) => b[1] - a[1]).slice(0, 18)) console.log(`${pct(us)}  ${k}`);
console.log('\nsrc/ functions, total time (self + callees):');
for (const [k, us] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`);
