// admin.tokens in the config: admin.token is one more token (named admin, of role admin); each token has exactly one
// secret (token, sha256, tokenFile), a name and a secret of its own; token files are read at start with an error
// naming the field.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, parseConfig } from '../../../src/domain/config.js';
import { sha256Hex } from '../../../src/domain/config-schema.js';
import { readAdminTokens } from '../../../src/ops/config-file.js';

const T = 'a-long-enough-admin-token';
const refused = (admin: unknown) => {
  try {
    parseConfig({ admin });
  } catch (e) {
    assert.instance(e, ConfigError);
    return (e as Error).message;
  }
  throw new Error('accepted');
};

test('admin.token is the token named admin, of role admin, before the named ones', () => {
  const c = parseConfig({ admin: { token: T, tokens: [{ name: 'dash', role: 'read', sha256: 'AB'.repeat(32) }] } });
  assert.equal(c.admin.tokens, [
    { name: 'admin', role: 'admin', token: T },
    { name: 'dash', role: 'read', sha256: 'AB'.repeat(32) },
  ]);
  assert.equal(parseConfig({}).admin.tokens, []);
  assert.is(parseConfig({}).admin.auditRetentionDays, 365);
});

test('each token: one secret, a known role, a name and a secret of its own', () => {
  assert.is(refused({ tokens: [{ name: 'x', role: 'read' }] }), 'config: admin.tokens[0] needs one of token, sha256, tokenFile');
  assert.is(
    refused({ tokens: [{ name: 'x', role: 'read', token: T, sha256: sha256Hex(T) }] }),
    'config: admin.tokens[0].sha256 must not be given with token (one of token, sha256, tokenFile)',
  );
  assert.match(
    refused({ tokens: [{ name: 'x', role: 'root', token: T }] }),
    /^config: admin\.tokens\[0\]\.role must be one of read, operator, admin$/,
  );
  assert.match(refused({ tokens: [{ name: 'has space', role: 'read', token: T }] }), /admin\.tokens\[0\]\.name must be a name of 1 to 64/);
  assert.match(
    refused({ tokens: [{ name: 'x', role: 'read', token: 'short' }] }),
    /admin\.tokens\[0\]\.token must be a string of at least 16/,
  );
  assert.match(refused({ tokens: [{ name: 'x', role: 'read', sha256: 'abc' }] }), /admin\.tokens\[0\]\.sha256 must be 64 hex digits/);
  assert.is(
    refused({ token: T, tokens: [{ name: 'admin', role: 'read', token: `${T}-2` }] }),
    "config: admin.tokens[0].name is admin.token's name",
  );
  assert.is(
    refused({
      tokens: [
        { name: 'a', role: 'read', token: T },
        { name: 'b', role: 'admin', sha256: sha256Hex(T) },
      ],
    }),
    'config: admin.tokens[1].sha256 is the secret of tokens[0]',
  );
});

test('a tokenFile is read at start (white space dropped); an unreadable or short one names the field', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-tokens-'));
  const file = path.join(dir, 'desk.token');
  fs.writeFileSync(file, `  ${T}\n`);
  const short = path.join(dir, 'short.token');
  fs.writeFileSync(short, 'abc\n');
  try {
    const c = parseConfig({
      admin: {
        tokens: [
          { name: 'desk', role: 'operator', tokenFile: file },
          { name: 'h', role: 'read', sha256: 'AB'.repeat(32) },
        ],
      },
    });
    assert.equal(readAdminTokens(c.admin.tokens), [
      { name: 'desk', role: 'operator', token: T },
      { name: 'h', role: 'read', sha256: 'ab'.repeat(32) },
    ]);
    assert.throws(
      () => readAdminTokens([{ name: 'x', role: 'read', tokenFile: path.join(dir, 'none') }]),
      (e: Error) => e instanceof ConfigError && /^config: admin\.tokens\[0\]\.tokenFile: cannot read .*none: ENOENT/.test(e.message),
    );
    assert.throws(
      () => readAdminTokens([{ name: 'x', role: 'read', tokenFile: short }]),
      (e: Error) => e instanceof ConfigError && /must hold a token of at least 16 characters$/.test(e.message),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
