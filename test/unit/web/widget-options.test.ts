// The widget's script-tag options (web/widget/options.ts) and its zh/en texts (web/widget/texts.ts): what a
// shop's tag says becomes the options the loader passes into the frame, and bad values are dropped, not used.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { optionsQuery, readOptions } from '../../../web/widget/options.js';
import { localeOf, text } from '../../../web/widget/texts.js';

const from = (o: Record<string, string>) => readOptions((k) => o[k]);

test('a full tag: shop, product, language, side, pre-chat fields, colours', () => {
  const o = from({
    shop: 'shop_2@localhost/res',
    product: ' sku-tv ',
    lang: 'en-GB',
    position: 'left',
    prechat: 'name, email,bogus,email',
    accent: '#c2185b',
    accentText: 'white',
  });
  assert.equal(o, {
    shop: 'shop_2@localhost',
    product: 'sku-tv',
    locale: 'en',
    position: 'left',
    prechat: ['name', 'email'],
    title: undefined,
    open: false,
    page: undefined,
    colours: { '--cw-accent': '#c2185b', '--cw-accent-text': 'white' },
  });
});

test('defaults; a colour that is not one is dropped; no shop is refused', () => {
  const o = from({ shop: 'shop_2@localhost', accent: 'red;background:url(x)', position: 'top' });
  assert.is(o.locale, 'both');
  assert.is(o.position, 'right');
  assert.equal(o.prechat, []);
  assert.equal(o.colours, {});
  assert.throws(() => from({ shop: 'nobody' }), /data-shop/);
});

test('the frame gets the same options back from the loader’s query string', () => {
  const o = from({ shop: 'shop_2@localhost', product: 'sku-tv', lang: 'zh', prechat: 'name,phone', accent: '#123456' });
  (globalThis as { location?: unknown }).location = { href: 'https://shop.example/tv?x=1' };
  try {
    const q = new URLSearchParams(optionsQuery(o, 'https://shop.example'));
    assert.is(q.get('parent'), 'https://shop.example');
    assert.equal(
      readOptions((k) => q.get(k)),
      { ...o, page: 'https://shop.example/tv?x=1' },
    );
  } finally {
    delete (globalThis as { location?: unknown }).location;
  }
});

test('texts: one language, or both side by side', () => {
  assert.is(text('zh', 'send'), '发送');
  assert.is(text('en', 'send'), 'Send');
  assert.is(text('both', 'launcher'), '客服 Chat');
  assert.is(text('both', 'yourMessage'), 'Your message');
  assert.is(localeOf('zh-CN'), 'zh');
  assert.is(localeOf(undefined), 'both');
});

test.run();
