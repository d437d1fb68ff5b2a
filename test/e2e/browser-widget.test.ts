// The embeddable widget in a real browser (Debian's chromium via playwright-core) against a real ejabberd with
// mod_consult and the real sidecar process: a shop's page on ANOTHER origin (a second tiny http server) embeds
// widget.js, which puts the widget in an iframe of the widget's origin. The script tag's product routes the
// consult to that product's group; the pre-chat form's answers reach the agent as the context child; the shop's
// page cannot read the visitor's credentials; the JS API, Esc, the unread badge and the closed-shop banner work.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type FrameLocator, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startWebServer, type WebServer } from '../../scripts/web-server.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import type { Element, TestClient } from '../support/xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'localhost';
const VD = `visitors.${D}`;
const SHOP = `shop_2@${D}`;
const CLOSED_SHOP = `shop_3@${D}`;
const NS_CONTEXT = 'urn:xmpp:consult:context:0';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const STEP = 15_000; // any single wait in a page

interface Ctx {
  stack: Stack;
  web: WebServer;
  host: http.Server;
  hostUrl: string;
  browser: Browser;
  contexts: BrowserContext[];
  front: TestClient; // test01: the default group
  tv: TestClient; // test02: only in the group of product sku-tv
}
const t = suite<Ctx>('browser: the embeddable widget on another origin');

/** The shop's page: nothing but the embed tag, with the attributes of the test. */
function shopPage(widgetBase: string, attrs: Record<string, string>): string {
  const a = Object.entries(attrs)
    .map(([k, v]) => ` data-${k}="${v}"`)
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host shop</title></head><body>
<h1>Another shop's site</h1><script src="${widgetBase}/widget.js"${a} async></script></body></html>`;
}

setUpSuite(t, async (ctx) => {
  ctx.contexts = [];
  if (!fs.existsSync(path.join(repoRoot, 'dist-web', 'widget.html')))
    execFileSync('npm', ['run', '-s', 'build:web'], { cwd: repoRoot, stdio: 'inherit' });
  ctx.stack = await startStack({
    domain: D,
    config: {
      systemJid: `admin@${D}`,
      shops: [
        {
          jid: SHOP,
          name: '张滨测试店铺',
          agents: [
            { jid: `test01@${D}`, maxSessions: 5 },
            { jid: `test02@${D}`, maxSessions: 5 },
          ],
          groups: [
            { name: 'front', isDefault: true, agents: [`test01@${D}`] },
            { name: 'tv', agents: [`test02@${D}`], products: ['sku-tv'] },
          ],
        },
        // Never open: no weekday has hours.
        { jid: CLOSED_SHOP, name: 'Night shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }], hours: { timeZone: 'UTC', weekly: {} } },
      ],
    },
    shimOptions: { timeout: 2000, failure_policy: 'reject' },
    visitors: { visitorDomain: VD, visitorRegistrationTimeoutSec: 'infinity', visitorShaperRate: 100_000 },
    users: ['shop_2', 'shop_3', 'test01', 'test02'],
    sidecarStartMs: 120_000,
  });
  ctx.web = await startWebServer({
    port: 0,
    service: `ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}/ws`,
    domain: D,
    visitorDomain: VD,
    shops: [SHOP],
  });
  // The shop's own site: another port, so another origin than the widget's.
  ctx.host = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const attrs = Object.fromEntries(u.searchParams);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(shopPage(ctx.web.url, attrs));
  });
  await new Promise<void>((r) => ctx.host.listen(0, '127.0.0.1', r));
  ctx.hostUrl = `http://127.0.0.1:${(ctx.host.address() as AddressInfo).port}`;
  ctx.front = await ctx.stack.connect('test01');
  ctx.tv = await ctx.stack.connect('test02');
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 30_000 });
});

t.after(async (ctx) => {
  await Promise.all((ctx.contexts ?? []).map((c) => c.close().catch(() => undefined)));
  await ctx.browser?.close().catch(() => undefined);
  ctx.host?.closeAllConnections();
  await new Promise((r) => (ctx.host ? ctx.host.close(r) : r(undefined)));
  await ctx.web?.close();
  await ctx.stack?.stop();
});

/** A fresh browser (its own storage) on the shop's page with these script-tag attributes. */
async function hostPage(ctx: Ctx, attrs: Record<string, string>): Promise<{ page: Page; frame: FrameLocator }> {
  const c = await ctx.browser.newContext({ viewport: { width: 1100, height: 760 } });
  ctx.contexts.push(c);
  const page = await c.newPage();
  page.setDefaultTimeout(STEP);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${ctx.hostUrl}/?${new URLSearchParams(attrs)}`);
  await page.locator('iframe#cw-frame').waitFor({ state: 'attached' });
  const frame = page.frameLocator('iframe#cw-frame');
  await frame.locator('.cw-status[data-online="true"]').waitFor({ state: 'attached' }); // the frame is hidden until opened
  assert.equal(errors, [], 'no script errors in the page');
  return { page, frame };
}

/** axe-core's violations of serious or critical impact in the widget's frame. */
async function axeInFrame(page: Page, widgetUrl: string): Promise<string[]> {
  const frame = page.frames().find((f) => f.url().startsWith(`${widgetUrl}/widget.html`))!;
  await frame.evaluate(`${fs.readFileSync(path.join(repoRoot, 'node_modules/axe-core/axe.min.js'), 'utf8')}\n;true`);
  const found = await frame.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(): Promise<{ violations: { id: string; impact: string; help: string }[] }> } }).axe;
    return (await axe.run()).violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help }));
  });
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help}`);
}

const jidIn = async (frame: FrameLocator) => (await frame.locator('.cw-root').getAttribute('data-jid'))!;
const entriesOf = (ctxEl: Element | undefined) =>
  (ctxEl?.children ?? []).filter((c): c is Element => typeof c !== 'string').map((c) => [c.attrs.var ?? c.name, c.getText()]);

t('the script tag’s product routes to its group’s agent; the pre-chat form’s answers arrive as the context', async (ctx) => {
  const { page, frame } = await hostPage(ctx, { shop: SHOP, product: 'sku-tv', prechat: 'name,email', lang: 'en' });
  await page.getByRole('button', { name: 'Chat' }).click();
  await frame.getByLabel('Name').waitFor();
  assert.equal(await axeInFrame(page, ctx.web.url), [], 'axe on the framed widget with its pre-chat form');
  await frame.getByLabel('Name').fill('Ann Lee');
  await frame.getByLabel('E-mail').fill('ann@example.com');
  await frame.getByRole('button', { name: 'Start chat' }).click();
  await frame.getByLabel('Your message').fill('Is the TV in stock?');
  await frame.getByLabel('Your message').press('Enter');
  const visitor = await jidIn(frame);
  assert.match(visitor, new RegExp(`^v[0-9a-f]{20}@${VD.replace('.', '\\.')}$`));

  const got = await ctx.tv.waitFor((el) => el.getChildText('body') === 'Is the TV in stock?', STEP);
  assert.is(got.attrs.realfrom, visitor, 'the tv group’s agent gets the visitor’s message');
  const entries = entriesOf(got.getChild('context', NS_CONTEXT));
  assert.equal(entries.slice(0, 2), [
    ['name', 'Ann Lee'],
    ['email', 'ann@example.com'],
  ]);
  assert.equal(entries[2]?.[0], 'page', 'the page it was on');
  assert.match(entries[2]![1], ctx.hostUrl);
  await ctx.front.settle();
  assert.not.ok(
    ctx.front.received.some((el) => el.getChildText('body') === 'Is the TV in stock?'),
    'the default group’s agent gets nothing',
  );
  await frame.locator('.cw-me[data-state="sent"], .cw-me[data-state="read"]').first().waitFor();
});

t('the pre-chat form’s answers show in the agent console’s visitor panel', async (ctx) => {
  // The agent test02 signs in to the console too (its plain client stays connected: both resources get the visitor).
  const c = await ctx.browser.newContext({ viewport: { width: 1280, height: 800 } });
  ctx.contexts.push(c);
  const agentPage = await c.newPage();
  agentPage.setDefaultTimeout(STEP);
  await agentPage.goto(`${ctx.web.url}/console.html`);
  await agentPage.getByLabel('Account').fill('test02');
  await agentPage.getByLabel('Password').fill('secret');
  await agentPage.getByRole('button', { name: 'Sign in' }).click();
  await agentPage.locator('#conn[data-online="true"]').waitFor();

  const { page, frame } = await hostPage(ctx, { shop: SHOP, product: 'sku-tv', prechat: 'name,email,phone', lang: 'en' });
  await page.getByRole('button', { name: 'Chat' }).click();
  await frame.getByLabel('Name').fill('Bo Chen');
  await frame.getByLabel('E-mail').fill('bo@example.com');
  await frame.getByLabel('Phone').fill('+86 138 0000 0000');
  await frame.getByRole('button', { name: 'Start chat' }).click();
  await frame.getByLabel('Your message').fill('Does the TV come with a wall mount?');
  await frame.getByLabel('Your message').press('Enter');

  // The visitor's conversation appears as a tab; the panel is about the conversation shown.
  const visitor = await jidIn(frame);
  await agentPage.getByRole('tab', { name: new RegExp(visitor.split('@')[0]) }).click();
  const panel = agentPage.locator('#visitor-panel');
  await panel.locator('dd[data-key="name"]', { hasText: 'Bo Chen' }).waitFor();
  assert.is(await panel.locator('dd[data-key="email"]').textContent(), 'bo@example.com');
  assert.is(await panel.locator('dd[data-key="phone"]').textContent(), '+86 138 0000 0000');
  assert.match((await panel.locator('dd[data-key="page"]').textContent()) ?? '', ctx.hostUrl, 'the page the visitor was on');
});

t('the shop’s page cannot read the visitor’s credentials: they live in the frame’s origin only', async (ctx) => {
  const { page, frame } = await hostPage(ctx, { shop: SHOP });
  const visitor = await jidIn(frame);
  const host = await page.evaluate(() => {
    const keys = Object.keys(localStorage);
    const f = document.querySelector('iframe') as HTMLIFrameElement;
    let reach: string;
    try {
      reach = String(f.contentWindow!.localStorage.length);
    } catch (e) {
      reach = (e as Error).name;
    }
    let dom: string;
    try {
      dom = String(f.contentDocument?.body ?? 'null');
    } catch (e) {
      dom = (e as Error).name;
    }
    return { keys, reach, dom, cookie: document.cookie };
  });
  assert.equal(host, { keys: [], reach: 'SecurityError', dom: 'null', cookie: '' });
  // ... while the frame has them (so the check above could fail).
  const inFrame = page.frames().find((f) => f.url().startsWith(`${ctx.web.url}/widget.html`))!;
  const creds = await inFrame.evaluate((vd) => JSON.parse(localStorage.getItem(`consult.visitor:${vd}`) ?? 'null'), VD);
  assert.is(`${creds.username}@${VD}`, visitor);
  assert.ok(creds.password.length >= 32);
  const res = await fetch(`${ctx.web.url}/widget.html`);
  assert.match(res.headers.get('content-security-policy') ?? '', 'frame-ancestors *');
  assert.is(res.headers.get('x-frame-options'), null);
  const consolePage = await fetch(`${ctx.web.url}/console.html`);
  assert.match(consolePage.headers.get('content-security-policy') ?? '', "frame-ancestors 'none'");

  // setProduct() from the page: the consult goes to that product's group like data-product's.
  await page.evaluate(() => {
    const w = (window as unknown as { ConsultWidget: { setProduct(p: string): void; open(): void } }).ConsultWidget;
    w.setProduct('sku-tv');
    w.open();
  });
  await frame.getByLabel('Your message').fill('Which TV sizes are there?');
  await frame.getByLabel('Your message').press('Enter');
  const got = await ctx.tv.waitFor((el) => el.getChildText('body') === 'Which TV sizes are there?', STEP);
  assert.is(got.attrs.realfrom, visitor);
});

t('the JS API: open, close, setLocale, on(message/unread); Esc closes; the unread badge', async (ctx) => {
  const { page, frame } = await hostPage(ctx, { shop: SHOP, accent: '#c2185b' });
  const launcher = page.locator('.cw-launcher');
  const iframe = page.locator('iframe#cw-frame');
  await page.evaluate(() => {
    interface Api {
      on(event: string, cb: (x: never) => void): Api;
      setLocale(l: string): void;
      setUser(u: Record<string, string>): void;
      setFields(f: Record<string, string>): void;
      open(): void;
    }
    const w = window as unknown as { ConsultWidget: Api; seen: unknown[]; unread: number[] };
    w.seen = [];
    w.unread = [];
    w.ConsultWidget.on('message', (m: unknown) => w.seen.push(m)).on('unread', (n: number) => w.unread.push(n));
    w.ConsultWidget.setLocale('zh');
    w.ConsultWidget.setUser({ name: 'Bo Chen', phone: '+86 10 1234 5678' });
    w.ConsultWidget.setFields({ plan: 'gold' });
    w.ConsultWidget.open();
  });
  await iframe.waitFor({ state: 'visible' });
  assert.is(await launcher.getAttribute('aria-expanded'), 'true');
  await frame.getByRole('button', { name: '发送', exact: true }).waitFor();
  assert.is((await launcher.textContent())?.trim(), '客服');
  const accent = await frame.locator('.cw-form .cw-send').evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.is(accent, 'rgb(194, 24, 91)', 'the colour given on the script tag reaches the frame');

  await frame.getByLabel('您的消息').fill('你好');
  await frame.getByLabel('您的消息').press('Enter');
  const visitor = await jidIn(frame);
  const first = await ctx.front.waitFor((el) => el.getChildText('body') === '你好' && el.attrs.realfrom === visitor, STEP);
  const given = entriesOf(first.getChild('context', NS_CONTEXT));
  assert.equal(
    given.filter(([k]) => k !== 'page'),
    [
      ['name', 'Bo Chen'],
      ['phone', '+86 10 1234 5678'],
      ['plan', 'gold'],
    ],
    'setUser and setFields reach the agent as the context',
  );
  await frame.locator('.cw-them').first().waitFor(); // the welcome, seen while open

  await frame.getByLabel('您的消息').press('Escape');
  await iframe.waitFor({ state: 'hidden' });
  assert.is(await launcher.getAttribute('aria-expanded'), 'false');
  await ctx.front.send(
    `<message to='${SHOP}' realto='${visitor}' type='chat'><body id='W1' msgType='1' maType='6'>稍等，我查一下</body></message>`,
  );
  const badge = page.locator('.cw-badge');
  await page.locator('.cw-badge:not([hidden])', { hasText: '1' }).waitFor();
  assert.is(await badge.textContent(), '1');
  await page.waitForFunction(() => (window as unknown as { unread: number[] }).unread.includes(1));
  const seen = await page.evaluate(() => (window as unknown as { seen: { who: string; text: string }[] }).seen);
  assert.ok(
    seen.some((m) => m.who === 'them' && m.text === '稍等，我查一下'),
    `on('message') got the agent's reply: ${JSON.stringify(seen)}`,
  );
  assert.ok(
    seen.some((m) => m.who === 'me' && m.text === '你好'),
    'and the visitor’s own',
  );

  await page.evaluate(() => (window as unknown as { ConsultWidget: { toggle(): void } }).ConsultWidget.toggle());
  await iframe.waitFor({ state: 'visible' });
  await page.locator('.cw-badge[hidden]').waitFor({ state: 'attached' });
  await page.evaluate(() => (window as unknown as { ConsultWidget: { setLocale(l: string): void } }).ConsultWidget.setLocale('en'));
  await frame.getByRole('button', { name: 'Send', exact: true }).waitFor();
  await page.evaluate(() => (window as unknown as { ConsultWidget: { close(): void } }).ConsultWidget.close());
  await iframe.waitFor({ state: 'hidden' });
  // Esc on the shop's page closes too.
  await launcher.click();
  await iframe.waitFor({ state: 'visible' });
  await page.locator('h1').click();
  await page.keyboard.press('Escape');
  await iframe.waitFor({ state: 'hidden' });
});

t('a closed shop: the notice, and the widget shows "leave a message"', async (ctx) => {
  const { page, frame } = await hostPage(ctx, { shop: CLOSED_SHOP, lang: 'en', position: 'left' });
  await page.getByRole('button', { name: 'Chat' }).click();
  const box = await page.locator('iframe#cw-frame').boundingBox();
  assert.ok(box && box.x < 100, `data-position="left" puts the frame on the left (x=${box?.x})`);
  await frame.getByLabel('Your message').fill('Are you open tomorrow?');
  await frame.getByLabel('Your message').press('Enter');
  const banner = frame.locator('.cw-banner');
  await banner.waitFor({ state: 'visible' });
  assert.is(await banner.getAttribute('data-reason'), 'closed');
  assert.match((await banner.textContent()) ?? '', "We're closed — leave a message");
  assert.match((await frame.getByLabel('Your message').getAttribute('placeholder')) ?? '', 'Leave a message');
  await frame.locator('.cw-system').first().waitFor(); // the shop's own closed text, as a notice
  await frame.locator('.cw-me[data-state="sent"]').first().waitFor(); // acked: kept as a left message
});

t.run();
