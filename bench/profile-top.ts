// Prints the top self-time functions of a V8 .cpuprofile (the newest in a dir, or a file).
//   npx tsx bench/profile-top.ts DIR_OR_FILE [N]
import fs from 'node:fs';
import path from 'node:path';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; }

const arg = process.argv[2];
if (!arg) throw new Error('usage: profile-top.ts DIR_OR_FILE [N]');
const top = Number(process.argv[3] ?? 25);
const file = fs.statSync(arg).isDirectory()
  ? fs.readdirSync(arg).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(arg, f)).sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]! // the main thread (tsx adds a loader thread)
  : arg;
const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
const byModule = new Map<string, number>();
let total = 0;
prof.samples.forEach((id, i) => {
  const dt = prof.timeDeltas[i] ?? 0;
  total += dt;
  const f = byId.get(id)!.callFrame;
  const where = f.url ? `${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/main\//, '')}:${f.lineNumber + 1}` : '';
  const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
  self.set(key, (self.get(key) ?? 0) + dt);
  const mod = !f.url ? `(${f.functionName || 'native'})` : f.url.includes('node_modules/') ? f.url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1')
    : f.url.startsWith('node:') ? 'node internals' : f.url.replace(/^file:\/\/.*\/main\//, '');
  byModule.set(mod, (byModule.get(mod) ?? 0) + dt);
});
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
[...self].sort((a, b) => b[1] - a[1]).slice(0, top).forEach(([k, us]) =>
  console.log(`${(100 * us / total).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(6)} ms  ${k}`));
console.log('\nby module (self time):');
[...byModule].sort((a, b) => b[1] - a[1]).slice(0, 15).forEach(([k, us]) =>
  console.log(`${(100 * us / total).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(6)} ms  ${k}`));
