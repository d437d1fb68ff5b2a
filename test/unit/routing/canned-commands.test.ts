// The commands of canned replies, tags and notes as parsed from a body, and the pure parts of canned replies:
// which replies a session may use (a group's over the shop's), placeholders, close names, the config's checks.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cannedFor, closeNames, fillCanned, visitorName } from '../../../src/domain/canned.js';
import { ConfigError, parseConfig } from '../../../src/domain/config.js';
import { parseCommand } from '../../../src/routing/commands.js';

const SHOP = 'shop@x.test';
const t = suite('canned, tag and note commands');

t('#name and /reply name ask for a canned reply; anything else that starts with # is an ordinary message', () => {
  assert.equal(parseCommand('#refund', SHOP), { name: 'canned', reply: 'refund' });
  assert.equal(parseCommand('  #Refund_Policy-2 ', SHOP), { name: 'canned', reply: 'refund_policy-2' });
  assert.equal(parseCommand('/reply refund', SHOP), { name: 'canned', reply: 'refund' });
  for (const ordinary of ['#1 question', '#2', '# refund', '#refund now', '##refund', '#', `#${'a'.repeat(33)}`, 'see #refund'])
    assert.is(parseCommand(ordinary, SHOP), undefined, ordinary);
  assert.is(parseCommand('/reply', SHOP)?.name, 'invalid');
  assert.is(parseCommand('/reply two words', SHOP)?.name, 'invalid');
  assert.is(parseCommand('/reply 1x', SHOP)?.name, 'invalid');
  assert.equal(parseCommand('/canned', SHOP), { name: 'canned-list' });
});

t('/tag, /untag and /note', () => {
  assert.equal(parseCommand('/tag VIP refund vip', SHOP), { name: 'tag', labels: ['vip', 'refund'] });
  assert.equal(parseCommand('/tag 退款', SHOP), { name: 'tag', labels: ['退款'] });
  assert.equal(parseCommand('/untag', SHOP), { name: 'untag', labels: [] });
  assert.equal(parseCommand('/untag late', SHOP), { name: 'untag', labels: ['late'] });
  assert.equal(parseCommand('/note  call back\nat 5 ', SHOP), { name: 'note', text: 'call back\nat 5' });
  assert.equal(parseCommand('/tag', SHOP), { name: 'invalid', text: '/tag takes a label: /tag <label>' });
  assert.is(parseCommand('/tag a,b', SHOP)?.name, 'invalid');
  assert.is(parseCommand(`/tag ${'x'.repeat(33)}`, SHOP)?.name, 'invalid');
  assert.equal(parseCommand('/note', SHOP), { name: 'invalid', text: '/note takes a text: /note <text>' });
  assert.is(parseCommand('/tagged', SHOP), undefined, 'not a command: an ordinary message');
});

t('a session’s replies: the shop’s with its groups’ over them (the first group named wins)', () => {
  const shop: { canned?: Record<string, string>; groups: { name: string; canned?: Record<string, string> }[] } = {
    canned: { hi: 'shop hi', bye: 'shop bye' },
    groups: [{ name: 'a', canned: { hi: 'a hi', only: 'a only' } }, { name: 'b', canned: { hi: 'b hi' } }, { name: 'c' }],
  };
  assert.equal(cannedFor(shop), { hi: 'shop hi', bye: 'shop bye' });
  assert.equal(cannedFor(shop, 'a,b'), { hi: 'a hi', bye: 'shop bye', only: 'a only' });
  assert.equal(cannedFor(shop, 'b,a'), { hi: 'b hi', bye: 'shop bye', only: 'a only' });
  assert.equal(cannedFor(shop, 'c'), { hi: 'shop hi', bye: 'shop bye' });
  assert.equal(cannedFor({ groups: [] }, 'gone'), {});
});

t('placeholders, visitor names and close names', () => {
  assert.is(fillCanned('{visitor}/{agent}/{shop}/{other}', { visitor: 'v', agent: 'a', shop: 's' }), 'v/a/s/{other}');
  assert.is(visitorName('ann@x.test'), 'ann');
  assert.is(visitorName('ann@x.test', ' Ann Lee '), 'Ann Lee');
  assert.is(visitorName('ann@x.test', ' '), 'ann');
  assert.equal(closeNames('refnd', ['refund', 'hours', 'refund-policy']), ['refund']);
  assert.equal(closeNames('ref', ['refund', 'hours', 'refund-policy']), ['refund', 'refund-policy']);
  assert.equal(closeNames('zzz', ['refund', 'hours']), []);
});

t('the config checks names, texts and their number', () => {
  const shop = (canned: unknown) => ({ shops: [{ jid: SHOP, name: 'S', agents: [], canned }] });
  assert.equal(parseConfig(shop({ hi: 'Hello {visitor}' })).shops[0].canned, { hi: 'Hello {visitor}' });
  const problem = (canned: unknown) => {
    try {
      parseConfig(shop(canned));
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return 'accepted';
  };
  assert.match(problem({ 'Not A Name': 'x' }), 'is not a canned reply name');
  assert.match(problem({ hi: 'Hello {customer}' }), 'uses {customer}; it may use {visitor}, {agent}, {shop}');
  assert.match(problem({ hi: '' }), 'must be a string of 1 to 2000 characters');
  assert.match(problem(Object.fromEntries(Array.from({ length: 201 }, (_, i) => [`r${i}`, 'x']))), 'at most 200 canned replies');
});

t.run();
