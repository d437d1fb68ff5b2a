// Fails when code, tests or the schema name a tracker issue by number: names and comments say what a
// thing is, not when it was asked for. Part of `npm run lint`.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const roots = ['src', 'test', 'erlang-shim', 'bench', 'scripts', 'web', 'proto'];
const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '--', ...roots], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => /\.(ts|mjs|erl|hrl|proto|sh|yml)$/.test(f));
const found = [];
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    continue; // deleted in the work tree
  }
  text.split('\n').forEach((line, i) => {
    if (/issue[ -]?[0-9]/i.test(line)) found.push(`${file}:${i + 1}: ${line.trim()}`);
  });
}
if (found.length > 0) {
  console.error(`issue numbers in code (say what the thing is instead):\n${found.join('\n')}`);
  process.exit(1);
}
