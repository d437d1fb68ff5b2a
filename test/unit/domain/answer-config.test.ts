// The answer-or-move-on settings in the config: a shop's answerTimeoutSec and maxMissedChats, a group's own
// answerTimeoutSec; absent means off, out of range is an error naming the field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, parseConfig } from '../../../src/domain/config.js';
import { answerTimeoutOf } from '../../../src/routing/groups.js';

const D = 'cfg.test';
const shop = (extra: Record<string, unknown> = {}) => ({
  jid: `shop@${D}`,
  name: 'S',
  agents: [{ jid: `ann@${D}` }],
  ...extra,
});
const problem = (raw: unknown) => {
  try {
    parseConfig(raw);
    return undefined;
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
};

test('absent: no answer timeout and never away; the shop carries no key', () => {
  const [s] = parseConfig({ shops: [shop()] }).shops;
  assert.not.ok('answerTimeoutSec' in s);
  assert.not.ok('maxMissedChats' in s);
  assert.is(answerTimeoutOf(s, ''), 0);
});

test("a shop's settings, and a group's answerTimeoutSec winning for its sessions (0 turns it off there)", () => {
  const groups = [
    { name: 'tv', agents: [`ann@${D}`], products: ['sku-tv'], answerTimeoutSec: 15 },
    { name: 'quiet', agents: [`ann@${D}`], answerTimeoutSec: 0 },
    { name: 'plain', agents: [`ann@${D}`] },
  ];
  const [s] = parseConfig({ shops: [shop({ answerTimeoutSec: 60, maxMissedChats: 3, groups })] }).shops;
  assert.equal([s.answerTimeoutSec, s.maxMissedChats], [60, 3]);
  assert.equal(
    ['', 'tv', 'quiet', 'plain', 'plain,tv'].map((key) => answerTimeoutOf(s, key)),
    [60, 15, 0, 60, 15],
  );
});

test('out of range or not an integer: an error naming the field', () => {
  assert.is(problem({ shops: [shop({ answerTimeoutSec: -1 })] }), 'config: shops[0].answerTimeoutSec must be an integer in 0..86400');
  assert.is(problem({ shops: [shop({ maxMissedChats: 1.5 })] }), 'config: shops[0].maxMissedChats must be an integer in 0..1000');
  assert.is(
    problem({ shops: [shop({ groups: [{ name: 'tv', answerTimeoutSec: 'soon' }] })] }),
    'config: shops[0].groups[0].answerTimeoutSec must be an integer in 0..86400',
  );
});

test.run();
