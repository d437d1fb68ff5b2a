// The documentation points at files that exist: every relative link of README.md, docs/*.md and the shim's
// README (and the heading its #fragment names, in a Markdown file), every repository path written in backticks
// (src/…, test/…, docs/…), and every test file named alone.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const docs = [
  'README.md',
  'erlang-shim/README.md',
  ...fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** Top-level folders whose paths the docs name in backticks. */
const REPO_PATH = /^(?:src|test|docs|scripts|erlang-shim|config|deploy|bench|proto|web)\/[\w./-]*$/;
/** Built by `make -C erlang-shim` and `npm run build`, not in a fresh checkout. */
const BUILT = /^erlang-shim\/ebin(?:-test)?\/?$/;

/** The text without fenced code blocks (commands there are examples, not references). */
const prose = (text: string) => text.replace(/^```[^\n]*\n[\s\S]*?^```[ \t]*$/gm, '');

/** Relative targets of Markdown links and images: the file ('' for this one) and the #fragment, if any. */
function linkTargets(text: string): { file: string; fragment?: string }[] {
  const targets: { file: string; fragment?: string }[] = [];
  for (const m of prose(text).matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(m[1])) continue; // a URL
    const [file, fragment] = m[1].split('#', 2);
    targets.push({ file: decodeURIComponent(file), ...(fragment ? { fragment: decodeURIComponent(fragment) } : {}) });
  }
  return targets;
}

/** The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as dashes. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const slug = m[1]
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** Inline code spans. */
const codeSpans = (text: string) => [...prose(text).matchAll(/`([^`\n]+)`/g)].map((m) => m[1].trim());

const testFiles = (() => {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(dir, e.name));
      else names.add(e.name);
    }
  };
  walk(path.join(root, 'test'));
  walk(path.join(root, 'erlang-shim/test'));
  return names;
})();

/** What one document names that is not there, as `what: where` lines. */
function deadReferences(doc: string): string[] {
  const text = fs.readFileSync(path.join(root, doc), 'utf8');
  const dead: string[] = [];
  for (const { file, fragment } of linkTargets(text)) {
    const target = file ? path.resolve(root, path.dirname(doc), file) : path.join(root, doc);
    if (!fs.existsSync(target)) dead.push(`link ${file}`);
    else if (fragment && target.endsWith('.md') && !anchors(fs.readFileSync(target, 'utf8')).has(fragment))
      dead.push(`link ${file}#${fragment}: no such heading`);
  }
  for (const span of codeSpans(text)) {
    const file = span.replace(/:\d+$/, ''); // file.ts:42
    if (REPO_PATH.test(file) && !BUILT.test(file) && !fs.existsSync(path.join(root, file))) dead.push(`path ${span}`);
    else if (/^[\w.-]+\.test\.ts$/.test(file) && !testFiles.has(file)) dead.push(`test file ${span}`);
  }
  return dead.map((d) => `${doc}: ${d}`);
}

test('the reference finder sees links, backticked paths and test names, but not fenced commands', () => {
  const sample = [
    'See [the shim](../erlang-shim/README.md#installation), [site](https://example.net) and [here](#top).',
    'The code is in `src/main.ts:12` and `docs/nothing-here.md`; `gone.test.ts` is named alone.',
    '```sh',
    'cat `src/not-a-reference.ts`',
    '```',
  ].join('\n');
  assert.equal(linkTargets(sample), [
    { file: '../erlang-shim/README.md', fragment: 'installation' },
    { file: '', fragment: 'top' },
  ]);
  assert.equal(codeSpans(sample), ['src/main.ts:12', 'docs/nothing-here.md', 'gone.test.ts']);
});

test("headings get GitHub's anchors, a repeated one numbered", () => {
  const text = ['# Opening hours, left messages', '## Groups (skill groups)', '## `grpc.tls` and TLS', '## Notes', '## Notes'].join('\n');
  assert.equal([...anchors(text)], ['opening-hours-left-messages', 'groups-skill-groups', 'grpctls-and-tls', 'notes', 'notes-1']);
});

for (const doc of docs) {
  test(`${doc} names only files that exist`, () => {
    const dead = deadReferences(doc);
    assert.equal(dead, [], dead.join('\n'));
  });
}

test.run();
