// Reading a config file: JSON or YAML by its extension, with the environment's and the flags' settings on top.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, outsideOverrides } from '../../../src/domain/config.js';
import { loadConfig } from '../../../src/ops/config-file.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-config-'));
const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
};
const refused = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ConfigError);
    return (e as Error).message;
  }
  assert.unreachable('accepted');
  return '';
};

const YAML_CONFIG = `# a comment
grpc:
  port: 50061
store: "memory:"
timers:
  tickSec: 2
shops:
  - jid: shop@d.test
    name: Shop
    agents:
      - jid: ann@d.test
        maxSessions: 3
`;

test('a .yaml or .yml file is read as YAML, and checked as JSON is', () => {
  for (const name of ['c.yaml', 'c.yml', 'C.YAML']) {
    const c = loadConfig(write(name, YAML_CONFIG));
    assert.equal([c.grpc.port, c.timers.tickSec, c.shops[0]!.agents[0]!.maxSessions], [50061, 2, 3], name);
  }
  assert.is(
    refused(() => loadConfig(write('typo.yaml', `${YAML_CONFIG}timerz:\n  tickSec: 1\n`))),
    'config: timerz is not a known key (did you mean timers?)',
  );
  assert.match(
    refused(() => loadConfig(write('bad.yaml', 'grpc: [port: 1\n'))),
    /^config: .*bad\.yaml is not valid YAML: /,
  );
  assert.match(
    refused(() => loadConfig(write('dup.yml', 'store: a\nstore: b\n'))),
    /is not valid YAML: .*unique/i,
  );
});

test('any other file is JSON; an empty YAML file is an empty config (every default, no shops)', () => {
  const c = loadConfig(write('c.json', JSON.stringify({ grpc: { port: 50062 } })));
  assert.is(c.grpc.port, 50062);
  assert.match(
    refused(() => loadConfig(write('yaml-in.json', YAML_CONFIG))),
    /c?yaml-in\.json is not valid JSON/,
  );
  assert.equal(loadConfig(write('empty.yaml', '')).shops, []);
});

test('overrides apply over the file, and an unreadable file names where its path came from', () => {
  const file = write('o.yaml', YAML_CONFIG);
  const c = loadConfig(file, outsideOverrides({ CONSULT_GRPC_PORT: '50070' }, { 'admin-port': '0' }));
  assert.equal([c.grpc.port, c.admin.port], [50070, 0]);
  assert.match(
    refused(() => loadConfig(path.join(dir, 'missing.json'), [], 'CONSULT_CONFIG')),
    /^CONSULT_CONFIG: cannot read .*missing\.json/,
  );
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test.run();
