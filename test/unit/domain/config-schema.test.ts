// The config's schema: unknown keys named by their path, types and ranges, empty shops, settings from the
// environment and the command line over the file's, and the shipped JSON Schema in step with the zod one.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, outsideOverrides, parseConfig, withSystemJid } from '../../../src/domain/config.js';
import { configJsonSchema } from '../../../src/domain/config-schema.js';
import { SCHEMA_FILE, schemaText } from '../../../scripts/gen-config-schema.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const shop = { jid: 'shop@d.test', name: 'S', agents: [{ jid: 'ann@d.test' }] };
const TOKEN = 'a-token-of-24-characters';

/** The ConfigError's message for raw (failing the test when it is accepted). */
const problem = (raw: unknown, overrides = outsideOverrides({})): string => {
  try {
    parseConfig(raw, overrides);
  } catch (e) {
    assert.instance(e, ConfigError);
    return (e as Error).message;
  }
  assert.unreachable(`accepted: ${JSON.stringify(raw)}`);
  return '';
};

test('an unknown key is an error naming its path, with the key it was likely meant to be', () => {
  assert.is(problem({ timerz: { tickSec: 5 } }), 'config: timerz is not a known key (did you mean timers?)');
  assert.is(problem({ admin: { tokn: TOKEN } }), 'config: admin.tokn is not a known key (did you mean token?)');
  assert.is(
    problem({ shops: [{ ...shop, agents: [{ jid: 'ann@d.test', max: 3 }] }] }),
    'config: shops[0].agents[0].max is not a known key; use one of jid, maxSessions, status',
  );
  assert.match(problem({ shops: [{ ...shop, bot: { mode: 'none', timeout: 10 } }] }), /shops\[0\]\.bot\.timeout is not a known key/);
  assert.match(
    problem({ grpc: { tls: { cert: 'c', key: 'k', ca: 'x' } } }),
    /grpc\.tls\.ca is not a known key; use one of cert, key, clientCa/,
  );
  // Every problem is told, on one line.
  assert.is(
    problem({ timerz: {}, admin: { tokn: TOKEN } }),
    'config: admin.tokn is not a known key (did you mean token?); config: timerz is not a known key (did you mean timers?)',
  );
});

test('wrong types and values out of range name the field and what it must be', () => {
  assert.is(problem({ grpc: { port: '50051' } }), 'config: grpc.port must be an integer in 0..65535');
  assert.is(problem({ grpc: { port: 70000 } }), 'config: grpc.port must be an integer in 0..65535');
  assert.is(problem({ timers: { tickSec: 0.5 } }), 'config: timers.tickSec must be an integer in 1..3600');
  assert.is(problem({ shops: [{ ...shop, queueEnabled: 'yes' }] }), 'config: shops[0].queueEnabled must be true or false');
  assert.is(
    problem({ shops: [{ ...shop, strategy: 'fastest' }] }),
    'config: shops[0].strategy must be one of sticky, least-busy, round-robin, random',
  );
  assert.is(problem({ shops: [{ name: 'S', agents: [] }] }), 'config: shops[0].jid is required');
  assert.is(problem({ shops: {} }), 'config: shops must be an array');
  assert.is(problem({ logLevel: 'loud' }), 'config: logLevel must be one of fatal, error, warn, info, debug, trace, silent');
  assert.is(problem({ store: 'mysql://db' }), 'config: store must be memory:, pglite:memory, pglite:<dir> or postgres://…');
  assert.is(problem([]), 'config: the top level must be an object');
  assert.is(problem({ shops: [shop, shop] }), 'config: shops[1].jid must be listed once (shop@d.test is listed twice)');
});

test('defaults are filled in as before: a shop takes the top-level limits, its name as welcome, its language text', () => {
  const c = parseConfig({ limits: { queueMax: 9 }, shops: [{ ...shop, limits: { stickyMax: 7 } }] });
  assert.equal(
    [c.grpc.host, c.grpc.port, c.admin.port, c.store, c.logLevel, c.timers.tickSec],
    ['127.0.0.1', 50051, 8088, 'memory:', 'info', 5],
  );
  assert.equal([c.shops[0].limits.queueMax, c.shops[0].limits.stickyMax, c.shops[0].limits.keptPerVisitor], [9, 7, 100]);
  assert.equal([c.shops[0].welcome, c.shops[0].strategy, c.shops[0].queueEnabled], ['S', 'least-busy', true]);
  assert.equal(c.shops[0].agents, [{ jid: 'ann@d.test', maxSessions: 5, status: 'standard' }]);
  assert.is(c.systemJid, 'admin@d.test');
});

test('shops may be empty (the store has them): systemJid then comes from the store', () => {
  const c = parseConfig({ store: 'pglite:/var/lib/consult', admin: { token: TOKEN } });
  assert.equal(c.shops, []);
  assert.is(c.systemJid, '', 'not known from the config');
  assert.is(withSystemJid(c, ['shop_2@chat.example', 'b@other']).systemJid, 'admin@chat.example');
  assert.is(withSystemJid(parseConfig({ systemJid: 'bot@d.test' }), ['s@x']).systemJid, 'bot@d.test', 'given: kept');
  assert.is(parseConfig({}).shops.length, 0);
});

test('the environment overrides the file, and a flag the environment; each value goes through the schema', () => {
  const file = { grpc: { host: '127.0.0.1', port: 50051 }, admin: { port: 8088 }, store: 'memory:', shops: [shop] };
  const env = {
    CONSULT_GRPC_PORT: '6000',
    CONSULT_ADMIN_PORT: '9000',
    CONSULT_STORE: 'pglite:/tmp/x',
    CONSULT_ADMIN_TOKEN: TOKEN,
    CONSULT_LOG_LEVEL: 'debug',
    CONSULT_SIDECAR_ID: 'east-1',
    CONSULT_ADMIN_HOST: '10.0.0.5',
    CONSULT_GRPC_HOST: '0.0.0.0',
  };
  const fromEnv = parseConfig(file, outsideOverrides(env));
  assert.equal(
    [
      fromEnv.grpc.host,
      fromEnv.grpc.port,
      fromEnv.admin.host,
      fromEnv.admin.port,
      fromEnv.admin.token,
      fromEnv.store,
      fromEnv.logLevel,
      fromEnv.sidecarId,
    ],
    ['0.0.0.0', 6000, '10.0.0.5', 9000, TOKEN, 'pglite:/tmp/x', 'debug', 'east-1'],
  );
  const flagged = parseConfig(file, outsideOverrides(env, { 'grpc-port': '7000', store: 'memory:', 'log-level': 'warn' }));
  assert.equal([flagged.grpc.port, flagged.store, flagged.logLevel, flagged.admin.port], [7000, 'memory:', 'warn', 9000]);
  assert.equal(parseConfig(file, outsideOverrides({ CONSULT_GRPC_PORT: '' })).grpc.port, 50051, 'an empty variable is unset');
  assert.equal(parseConfig(file).grpc.port, 50051, 'the file without overrides');
  assert.is(file.grpc.port, 50051, 'the raw config is not changed');
});

test('a bad value from the environment or a flag names the variable or the flag', () => {
  assert.is(problem({}, outsideOverrides({ CONSULT_GRPC_PORT: 'abc' })), 'CONSULT_GRPC_PORT: grpc.port must be an integer in 0..65535');
  assert.is(problem({}, outsideOverrides({ CONSULT_ADMIN_PORT: '-1' })), 'CONSULT_ADMIN_PORT: admin.port must be an integer in 0..65535');
  assert.is(problem({}, outsideOverrides({}, { 'grpc-port': '5e3' })), '--grpc-port: grpc.port must be an integer in 0..65535');
  assert.is(
    problem({}, outsideOverrides({ CONSULT_GRPC_PORT: 'abc' }, { 'grpc-port': '99999' })),
    '--grpc-port: grpc.port must be an integer in 0..65535',
    'the flag is what counts',
  );
  assert.match(
    problem({}, outsideOverrides({ CONSULT_ADMIN_TOKEN: 'short' })),
    /^CONSULT_ADMIN_TOKEN: admin\.token must be a string of at least 16/,
  );
  assert.match(problem({}, outsideOverrides({ CONSULT_LOG_LEVEL: 'verbose' })), /^CONSULT_LOG_LEVEL: logLevel must be one of/);
  assert.match(
    problem({ grpc: { port: 'x' } }, outsideOverrides({ CONSULT_ADMIN_PORT: '1' })),
    /^config: grpc\.port/,
    'the file is named for its own values',
  );
});

test('config/consult.schema.json is what `npm run gen:schema` writes from ConfigSchema', () => {
  assert.is(fs.readFileSync(SCHEMA_FILE, 'utf8'), schemaText(), 'stale: run npm run gen:schema');
  const schema = configJsonSchema() as { additionalProperties: boolean; properties: Record<string, { default?: unknown }> };
  assert.is(schema.additionalProperties, false, 'unknown keys are refused by editors too');
  assert.equal(schema.properties.store!.default, 'memory:');
});

test('the example configs (JSON and YAML) name the schema and say the same', async () => {
  const json = JSON.parse(fs.readFileSync(path.join(repoRoot, 'config/consult.example.json'), 'utf8'));
  assert.is(json.$schema, './consult.schema.json');
  const yamlText = fs.readFileSync(path.join(repoRoot, 'config/consult.example.yaml'), 'utf8');
  assert.match(yamlText, /^# yaml-language-server: \$schema=\.\/consult\.schema\.json$/m);
  const { parse } = await import('yaml');
  const { $schema: _, ...fromJson } = json;
  assert.equal(parse(yamlText), fromJson);
  // Both are valid once the placeholder token is replaced.
  const ok = { admin: { ...json.admin, token: TOKEN } };
  assert.is(parseConfig({ ...json, ...ok }).shops[0]!.jid, 'shop_2@localhost');
  assert.match(problem(json), /admin\.token is the example config's placeholder/);
});

test.run();
