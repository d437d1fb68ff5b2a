// Typing both ways and attachments in a real browser (Debian's chromium via playwright-core) against a real ejabberd
// (WebSocket, visitor vhost, mod_http_upload) with mod_consult and the real sidecar process: the widget's and the
// console's chat states shown on the other side; an image chosen in the widget uploaded (XEP-0363) and sent, reaching
// a plain XMPP client of the agent as an http URL (OOB and QChat's inline image object) that GETs the same bytes, and
// shown inline in the console; an image from the console shown inline in the widget; a file above the upload
// service's limit refused with a clear message in the widget.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startWebServer, type WebServer } from '../../scripts/web-server.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import type { TestClient } from '../support/xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'localhost';
const VD = `visitors.${D}`;
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const STEP = 15_000; // any single wait in a page
const MAX_UPLOAD = 1024 * 1024; // the upload service's limit in this test: 1 MB
const PNG_RED = png(2, [200, 30, 30]);
const PNG_BLUE = png(3, [30, 30, 200]);

/** A valid PNG of `size`×`size` pixels of one colour (8-bit RGB), built here so the test needs no image files. */
function png(size: number, rgb: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter, no interlace
  const row = Buffer.from([0, ...Array.from({ length: size }, () => rgb).flat()]);
  const pixels = zlib.deflateSync(Buffer.concat(Array.from({ length: size }, () => row)));
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', pixels), chunk('IEND', Buffer.alloc(0))]);
}

interface Ctx {
  stack: Stack;
  web: WebServer;
  browser: Browser;
  contexts: BrowserContext[];
  agent: Page;
  visitor: Page;
  /** test01's plain XMPP client, a second resource next to its console: it gets the same relays. */
  plain: TestClient;
  jid: string;
}
const t = suite<Ctx>('browser: typing both ways, attachments through HTTP upload');

setUpSuite(t, async (ctx) => {
  ctx.contexts = [];
  if (!fs.existsSync(path.join(repoRoot, 'dist-web', 'widget.js')))
    execFileSync('npm', ['run', '-s', 'build:web'], { cwd: repoRoot, stdio: 'inherit' });
  ctx.stack = await startStack({
    domain: D,
    password: PASSWORD,
    config: {
      systemJid: `admin@${D}`,
      shops: [{ jid: SHOP, name: '张滨测试店铺', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
    },
    shimOptions: { timeout: 1000, failure_policy: 'reject' },
    visitors: { visitorDomain: VD, visitorRegistrationTimeoutSec: 'infinity', uploadMaxSize: MAX_UPLOAD },
    users: ['shop_2', 'test01'],
    sidecarStartMs: 120_000, // a busy 2-core machine
  });
  ctx.web = await startWebServer({
    port: 0,
    service: `ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}/ws`,
    domain: D,
    visitorDomain: VD,
    shops: [SHOP],
  });
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 30_000 });
  ctx.plain = await ctx.stack.connect('test01', 'plain');
  ctx.agent = await newPage(ctx);
  await ctx.agent.goto(`${ctx.web.url}/console.html`);
  await ctx.agent.getByLabel('Account').fill('test01');
  await ctx.agent.getByLabel('Password').fill(PASSWORD);
  await ctx.agent.getByRole('button', { name: 'Sign in' }).click();
  await ctx.agent.locator('#conn[data-online="true"]').waitFor();
  ctx.visitor = await newPage(ctx);
  await ctx.visitor.goto(`${ctx.web.url}/shop.html`);
  await ctx.visitor.getByRole('button', { name: /客服 Chat/ }).click();
  await ctx.visitor.locator('.cw-status[data-online="true"]').waitFor();
  ctx.jid = (await ctx.visitor.locator('.cw-root').getAttribute('data-jid'))!;
  // A first message opens the session (chat states before one go nowhere); the console opens its tab.
  await ctx.visitor.getByLabel('Your message').fill('你好');
  await ctx.visitor.getByLabel('Your message').press('Enter');
  await ctx.agent.getByRole('tab', { name: new RegExp(ctx.jid.split('@')[0]!) }).click();
  await ctx.agent.locator('#log .msg.visitor .text', { hasText: '你好' }).waitFor();
});

t.after(async (ctx) => {
  await Promise.all((ctx.contexts ?? []).map((c) => c.close().catch(() => undefined)));
  await ctx.browser?.close().catch(() => undefined);
  await ctx.web?.close();
  await ctx.stack?.stop();
});

async function newPage(ctx: Ctx): Promise<Page> {
  const c = await ctx.browser.newContext({ viewport: { width: 1100, height: 760 } });
  ctx.contexts.push(c);
  const page = await c.newPage();
  page.setDefaultTimeout(STEP);
  return page;
}

/**
 * axe-core's violations (any impact) in the parts this file is about (`include`: selectors), with
 * the elements (run in the page; CSP does not apply to CDP evaluation).
 */
async function axeViolations(page: Page, include: string[]): Promise<string[]> {
  await page.evaluate(`${fs.readFileSync(path.join(repoRoot, 'node_modules/axe-core/axe.min.js'), 'utf8')}\n;true`);
  return page.evaluate(async (include) => {
    type Result = { violations: Array<{ id: string; impact: string; nodes: Array<{ target: string[] }> }> };
    const r = await (window as unknown as { axe: { run(c: unknown, o?: unknown): Promise<Result> } }).axe.run(
      { include: include.map((sel) => [sel]) },
      { resultTypes: ['violations'] },
    );
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }, include);
}

/** The image's natural width once loaded (0 when the browser refused or failed to load it). */
const loadedWidth = (page: Page, selector: string) =>
  page.locator(selector).evaluate(async (img: HTMLImageElement) => {
    if (!img.complete)
      await new Promise((r) => {
        img.addEventListener('load', r, { once: true });
        img.addEventListener('error', r, { once: true });
      });
    return img.naturalWidth;
  });

t('typing is shown on the other side both ways, and ends with the message', async (ctx) => {
  const { agent, visitor } = ctx;
  assert.ok(await agent.locator('#typing').isHidden(), 'nobody types yet');
  await visitor.getByLabel('Your message').fill('我想问');
  await agent.locator('#typing', { hasText: 'typing' }).waitFor({ state: 'visible' });
  await visitor.getByLabel('Your message').fill(''); // emptied: paused
  await agent.locator('#typing').waitFor({ state: 'hidden' });

  assert.ok(await visitor.locator('.cw-typing').isHidden());
  await agent.getByLabel('Reply').fill('稍等');
  await visitor.locator('.cw-typing', { hasText: 'typing' }).waitFor({ state: 'visible' });
  await agent.getByRole('button', { name: 'Send' }).click();
  await visitor.locator('.cw-them .cw-text', { hasText: '稍等' }).waitFor();
  await visitor.locator('.cw-typing').waitFor({ state: 'hidden' }); // the message ends it

  await visitor.getByLabel('Your message').fill('还有一个问题');
  await agent.locator('#typing').waitFor({ state: 'visible' });
  await visitor.getByLabel('Your message').press('Enter');
  await agent.locator('#log .msg.visitor .text', { hasText: '还有一个问题' }).waitFor();
  await agent.locator('#typing').waitFor({ state: 'hidden' });
});

t('an image from the widget: uploaded, a plain agent client gets its URL, the console shows it inline', async (ctx) => {
  const { agent, visitor, plain } = ctx;
  await visitor.locator('#cw-file').setInputFiles({ name: '茶具.png', mimeType: 'image/png', buffer: PNG_RED });
  const got = await plain.waitFor((el) => el.is('message') && !!el.getChild('x', 'jabber:x:oob'), STEP);
  const url = got.getChild('x', 'jabber:x:oob')!.getChildText('url')!;
  const uploadBase = `http://127.0.0.1:${ctx.stack.ejabberd.httpPort}/upload/${VD}/`;
  assert.ok(url.startsWith(uploadBase), `an upload URL of the visitor vhost: ${url}`);
  assert.is(got.attrs.realfrom, ctx.jid);
  const body = got.getChild('body')!;
  assert.is(body.attrs.msgType, '3', "QChat's photo kind");
  assert.is(got.getChildText('body'), `[obj type="image" value="${url}"]`);
  const res = await fetch(url);
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-type'), 'image/png');
  assert.equal(Buffer.from(await res.arrayBuffer()), PNG_RED, 'the same bytes');

  // Inline in the console (CSP img-src allows the upload origin: the image loads) and in the widget's own line.
  const img = `#log .msg.visitor img[src="${url}"]`;
  await agent.locator(img).waitFor();
  assert.is(await loadedWidth(agent, img), 2);
  const mine = `.cw-me img[src="${url}"]`;
  await visitor.locator(mine).waitFor();
  assert.is(await loadedWidth(visitor, mine), 2);
  await visitor.locator(`.cw-me:has(img[src="${url}"]):is([data-state="sent"], [data-state="read"])`).waitFor(); // acked
});

t('an image from the console is shown inline in the widget', async (ctx) => {
  const { agent, visitor } = ctx;
  await agent.locator('#reply-file').setInputFiles({ name: 'cup.png', mimeType: 'image/png', buffer: PNG_BLUE });
  const img = visitor.locator(`.cw-them img[src^="http://127.0.0.1:${ctx.stack.ejabberd.httpPort}/upload/${D}/"]`);
  await img.waitFor();
  const src = (await img.getAttribute('src'))!;
  assert.equal(Buffer.from(await (await fetch(src)).arrayBuffer()), PNG_BLUE);
  assert.is(await loadedWidth(visitor, `.cw-them img[src="${src}"]`), 3);
  await agent.locator(`#log .msg.me img[src="${src}"]`).waitFor();
});

t('a file above the upload limit is refused with a clear message in the widget, nothing sent', async (ctx) => {
  const { visitor, plain } = ctx;
  const before = plain.received.length;
  await visitor.locator('#cw-file').setInputFiles({ name: 'big.png', mimeType: 'image/png', buffer: Buffer.alloc(MAX_UPLOAD + 1, 1) });
  await visitor.locator('.cw-system', { hasText: 'File too large (at most 1 MB)' }).waitFor();
  await plain.settle();
  assert.equal(
    plain.received.slice(before).filter((el) => el.is('message') && el.getChild('x', 'jabber:x:oob')),
    [],
    'no attachment reached the agent',
  );
});

t('axe-core: the message lists with images, the typing lines and the attach controls', async (ctx) => {
  for (const [name, page, include] of [
    ['widget', ctx.visitor, ['.cw-log', '.cw-typing', '.cw-attach', '#cw-file']],
    ['console', ctx.agent, ['#log', '#typing', '.attach', '#reply-file']],
  ] as const) {
    const v = await axeViolations(page, [...include]);
    assert.equal(v, [], `axe on the ${name}: ${v.join('; ')}`);
  }
});

t.run();
