// `consultctl import` and canned replies: a config's canned replies are put where the store's differ, and a config
// that drops them removes them (an empty set); the same replies plan nothing.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { planImport, type ShopView } from '../../../src/admin/import.js';
import { parseConfig } from '../../../src/domain/config.js';

const SHOP = 'shop_1@imp.test';
const config = (canned?: Record<string, string>) =>
  parseConfig({ shops: [{ jid: SHOP, name: 'One', agents: [], ...(canned ? { canned } : {}) }] });
/** The shop as GET /shops answers it once the config is applied, with these canned replies. */
const current = (canned?: Record<string, string>): ShopView[] => {
  const { agents: _a, ...shop } = config(canned).shops[0]!;
  return [{ ...shop, agents: [] }];
};

test('canned replies in a config are imported, changed and removed like any shop field', () => {
  const wanted = { refund: 'Your refund is on its way.' };
  const steps = planImport(config(wanted), current());
  assert.equal(
    steps.map((s) => [s.method, s.path, s.body]),
    [['PATCH', `/shops/${encodeURIComponent(SHOP)}`, { canned: wanted }]],
  );
  assert.equal(planImport(config(wanted), current(wanted)), [], 'the same replies: nothing to change');
  const dropped = planImport(config(), current(wanted));
  assert.equal(
    dropped.map((s) => s.body),
    [{ canned: {} }],
    'a config without them removes them',
  );
  const added = planImport(config(wanted), []);
  assert.equal(added[0]?.body?.canned, wanted, 'a new shop is put with its replies');
});

test.run();
