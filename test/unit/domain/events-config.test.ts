// The `events` config (webhook events out): what is refused with a message naming the key, how a shop's own
// endpoint and `false` win over the global one, and the secret from CONSULT_EVENTS_SECRET.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, eventHookOf, outsideOverrides, parseConfig } from '../../../src/domain/config.js';

const SECRET = 'a-secret-of-16-chars-or-more';
const problem = (raw: unknown): string => {
  try {
    parseConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  return 'no problem';
};

test('a url needs a secret and the other way round; a short secret, a bad url, an unknown key are named', () => {
  assert.is(problem({ events: { url: 'http://crm.test/hook' } }), 'config: events.secret must be given with events.url');
  assert.is(problem({ events: { secret: SECRET } }), 'config: events.url must be given with events.secret');
  assert.is(
    problem({ events: { url: 'http://crm.test/hook', secret: 'short' } }),
    'config: events.secret must be a string of at least 16 characters',
  );
  assert.is(problem({ events: { url: 'ftp://crm.test', secret: SECRET } }), 'config: events.url must be an http:// or https:// URL');
  assert.is(problem({ events: { urls: 'http://crm.test' } }), 'config: events.urls is not a known key (did you mean url?)');
  assert.is(
    problem({ events: { shops: { 'shop_1@d.test': { url: 'http://crm.test/hook' } } } }),
    'config: events.shops.shop_1@d.test must be {url, secret, …} or false',
  );
});

test('a shop’s own endpoint, or false, over the global one; defaults filled in', () => {
  const c = parseConfig({
    events: {
      url: 'http://all.test/hook',
      secret: SECRET,
      messages: true,
      shops: { 'own@d.test': { url: 'http://own.test/hook', secret: `${SECRET}-own`, timeoutMs: 300 }, 'none@d.test': false },
    },
  });
  assert.equal(eventHookOf(c.events, 'other@d.test'), { url: 'http://all.test/hook', secret: SECRET, messages: true, timeoutMs: 5000 });
  assert.equal(eventHookOf(c.events, 'own@d.test'), {
    url: 'http://own.test/hook',
    secret: `${SECRET}-own`,
    messages: true,
    timeoutMs: 300,
  });
  assert.is(eventHookOf(c.events, 'none@d.test'), undefined);
  assert.is(eventHookOf(parseConfig({}).events, 'other@d.test'), undefined, 'no events unless configured');
});

test('the secret from CONSULT_EVENTS_SECRET', () => {
  const c = parseConfig({ events: { url: 'http://all.test/hook' } }, outsideOverrides({ CONSULT_EVENTS_SECRET: SECRET }));
  assert.is(eventHookOf(c.events, 's@d.test')?.secret, SECRET);
});

test.run();
