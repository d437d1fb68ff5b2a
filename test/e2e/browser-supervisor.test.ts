// The supervisor view of the console and the accessibility of both pages, in a real browser (Debian's
// chromium via playwright-core) against a real ejabberd (WebSocket listener, visitor vhost) with
// mod_consult and the real sidecar process. A shop with one agent (one session at a time) and a
// supervisor: visitor1 (a plain client) is served by test01 (an agent console), visitor2 waits. The
// supervisor's console shows the session and the queue, monitors, whispers (the agent's console gets it,
// visitor1's client nothing) and takes over; an agent's console shows no panel. axe-core finds no
// violation at all (any impact) on the widget, the agent console with a conversation and the supervisor
// console, also at phone width. Screenshots: test-output/browser/ (UPDATE_SCREENSHOTS=1: docs/screenshots/).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startWebServer, type WebServer } from '../../scripts/web-server.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { type Element, isAck, type TestClient } from '../support/xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(repoRoot, 'test-output', 'browser');
const D = 'localhost';
const VD = `visitors.${D}`;
const SHOP = `shop_2@${D}`;
const NS = 'urn:xmpp:consult:supervisor:0';
const PASSWORD = 'secret';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const STEP = 15_000; // any single wait in a page
const SCREENSHOTS = ['supervisor-console.png', 'supervisor-console-phone.png'];

interface Ctx {
  root: string;
  stack: Stack;
  web: WebServer;
  browser: Browser;
  contexts: BrowserContext[];
  visitor1: TestClient;
  visitor2: TestClient;
  agent: Page;
  sue: Page;
}
const t = suite<Ctx>('browser: supervisor view and accessibility');

const bodyOf = (el: Element) => el.getChildText('body') ?? '';
const consult = (id: string, text: string) =>
  `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body></message>`;

setUpSuite(t, async (ctx) => {
  ctx.contexts = [];
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of SCREENSHOTS) fs.rmSync(path.join(OUT, f), { force: true });
  if (!fs.existsSync(path.join(repoRoot, 'dist-web', 'console.js')))
    execFileSync('npm', ['run', '-s', 'build:web'], { cwd: repoRoot, stdio: 'inherit' });
  // A private copy: `npm run build:web` elsewhere (it empties dist-web/ first) must not pull pages from under us.
  ctx.root = fs.mkdtempSync(path.join(os.tmpdir(), 'dist-web-'));
  fs.cpSync(path.join(repoRoot, 'dist-web'), ctx.root, { recursive: true });
  for (const f of ['console.html', 'console.js', 'shop.html', 'widget.js'])
    assert.ok(fs.existsSync(path.join(ctx.root, f)), `dist-web/${f} copied (was dist-web/ being rebuilt? run again)`);
  ctx.stack = await startStack({
    domain: D,
    password: PASSWORD,
    config: {
      systemJid: `admin@${D}`,
      shops: [
        {
          jid: SHOP,
          name: 'Supervised shop',
          language: 'en',
          supervisors: [`sue@${D}`],
          agents: [{ jid: `test01@${D}`, maxSessions: 1 }],
        },
      ],
    },
    shimOptions: { timeout: 1000, failure_policy: 'reject' },
    visitors: { visitorDomain: VD, visitorRegistrationTimeoutSec: 'infinity', visitorShaperRate: 1000 },
    users: ['shop_2', 'test01', 'sue', 'visitor1', 'visitor2'],
    sidecarStartMs: 120_000, // a busy 2-core machine: its first start compiles the sources
  });
  ctx.web = await startWebServer({
    port: 0,
    root: ctx.root,
    service: `ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}/ws`,
    domain: D,
    visitorDomain: VD,
    shops: [SHOP],
  });
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 30_000 });

  ctx.agent = await newPage(ctx);
  await signIn(ctx.agent, ctx, 'test01');
  ctx.visitor1 = await ctx.stack.connect('visitor1', 'web');
  await ctx.visitor1.send(consult('v1-1', 'hello, where is my parcel?'));
  await ctx.visitor1.waitFor(isAck('v1-1'));
  await ctx.agent.getByRole('tab', { name: /visitor1/ }).click();
  await ctx.agent.locator('#log .msg.visitor .text', { hasText: 'where is my parcel' }).waitFor();
  // test01 serves one visitor at a time: the second one waits in the queue.
  ctx.visitor2 = await ctx.stack.connect('visitor2', 'web');
  await ctx.visitor2.send(consult('v2-1', 'anyone there?'));
  await ctx.visitor2.waitFor(isAck('v2-1'));
  ctx.sue = await newPage(ctx);
  await signIn(ctx.sue, ctx, 'sue');
});

t.after(async (ctx) => {
  await Promise.all((ctx.contexts ?? []).map((c) => c.close().catch(() => undefined)));
  await ctx.browser?.close().catch(() => undefined);
  await ctx.web?.close();
  await ctx.stack?.stop();
  if (ctx.root) fs.rmSync(ctx.root, { recursive: true, force: true });
});

async function newPage(ctx: Ctx, viewport = { width: 1100, height: 900 }): Promise<Page> {
  const c = await ctx.browser.newContext({ viewport });
  ctx.contexts.push(c);
  const page = await c.newPage();
  page.setDefaultTimeout(STEP);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}

async function signIn(page: Page, ctx: Ctx, user: string): Promise<void> {
  await page.goto(`${ctx.web.url}/console.html`);
  await page.getByLabel('Account').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#conn[data-online="true"]').waitFor();
  await page.locator('#app').waitFor({ state: 'visible' });
}

/**
 * Every axe-core violation, whatever its impact, in the page and each of its frames (the widget may live in
 * one). Run through CDP, where the pages' CSP does not apply.
 */
async function axeViolations(page: Page): Promise<string[]> {
  const source = fs.readFileSync(path.join(repoRoot, 'node_modules/axe-core/axe.min.js'), 'utf8');
  const out: string[] = [];
  for (const frame of page.frames()) {
    await frame.evaluate(`${source}\n;true`);
    const res = await frame.evaluate(async () => {
      const r = await (
        window as unknown as {
          axe: {
            run(
              o?: unknown,
            ): Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: unknown }> }> }>;
          };
        }
      ).axe.run({ resultTypes: ['violations'], iframes: false });
      return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`);
    });
    out.push(...res.map((v) => (frame === page.mainFrame() ? v : `[frame ${frame.url()}] ${v}`)));
  }
  return out;
}

const row = (page: Page, visitor: string) => page.locator(`#supervisor tr[data-visitor="${visitor}"]`);

t('an agent console has no supervisor panel and no refusal shown', async (ctx) => {
  // The supervisor's console, signed in after it, shows its panel: the agent's probe was answered by then too.
  await ctx.sue.locator('#supervisor').waitFor();
  assert.is(await ctx.agent.locator('#supervisor').count(), 0);
  assert.not.match((await ctx.agent.locator('#notices').textContent()) ?? '', 'supervisors');
});

t('the supervisor console lists the open session and the queue', async (ctx) => {
  const r = row(ctx.sue, `visitor1@${D}`);
  await r.waitFor();
  assert.match((await r.textContent()) ?? '', `test01@${D}`);
  await ctx.sue.locator(`#supervisor .sup-queue li[data-visitor="visitor2@${D}"]`).waitFor();
  assert.match((await ctx.sue.locator('#supervisor h3').first().textContent()) ?? '', '1 open · 1 waiting');
  assert.is(await ctx.sue.getByRole('tab').count(), 0, 'the supervisor serves no conversation');
});

t("whisper: the agent's console shows it in the visitor's conversation; the visitor receives nothing", async (ctx) => {
  const secret = 'offer a 10% voucher, quietly';
  await ctx.sue.getByLabel('Whisper to the agent of').selectOption(`${SHOP}|visitor1@${D}`);
  await ctx.sue.getByLabel('Whisper', { exact: true }).fill(secret);
  await ctx.sue.getByRole('button', { name: 'Whisper', exact: true }).click();
  await ctx.sue.locator('#sup-status', { hasText: 'done' }).waitFor(); // acked
  await ctx.agent.locator('#log .msg .text', { hasText: secret }).waitFor();
  assert.is(await ctx.agent.getByRole('tab', { name: /sue/ }).count(), 0, 'not a conversation of its own');
  // The agent answers after it: once the visitor has that answer, a whisper sent to it would be there too.
  await ctx.agent.getByLabel('Reply').fill('Let me check your parcel.');
  await ctx.agent.getByRole('button', { name: 'Send' }).click();
  await ctx.visitor1.waitFor((el) => bodyOf(el) === 'Let me check your parcel.');
  const leaked = ctx.visitor1.received.filter((el) => el.toString().includes('voucher') || el.getChild('whisper', NS));
  assert.equal(
    leaked.map((el) => el.toString()),
    [],
    'the visitor received nothing of the whisper',
  );
});

t('monitor: copies of both directions arrive in the panel, not as conversations', async (ctx) => {
  await row(ctx.sue, `visitor1@${D}`)
    .getByRole('button', { name: /^Monitor/ })
    .click();
  await row(ctx.sue, `visitor1@${D}`).locator('button[aria-pressed="true"]').waitFor(); // /live after the ack
  await ctx.visitor1.send(consult('v1-2', 'it was due on Monday'));
  await ctx.visitor1.waitFor(isAck('v1-2'));
  await ctx.sue.locator('#sup-copies .sup-copy.visitor', { hasText: 'it was due on Monday' }).waitFor();
  await ctx.agent.locator('#log .msg.visitor .text', { hasText: 'it was due on Monday' }).waitFor();
  await ctx.agent.getByLabel('Reply').fill('It leaves the depot today.');
  await ctx.agent.getByRole('button', { name: 'Send' }).click();
  await ctx.sue.locator('#sup-copies .sup-copy.agent', { hasText: 'It leaves the depot today.' }).waitFor();
  assert.is(await ctx.sue.getByRole('tab').count(), 0, 'copies open no conversation');
  await ctx.sue.screenshot({ path: path.join(OUT, 'supervisor-console.png'), fullPage: true });
  const copies = await ctx.sue.locator('#sup-copies .sup-copy .text').allTextContents();
  assert.equal(
    copies.filter((c) => !c.trim()),
    [],
    `only copies with a text are listed: ${JSON.stringify(copies)}`,
  );
  // The same button turns it off.
  await row(ctx.sue, `visitor1@${D}`)
    .getByRole('button', { name: /^Monitor/ })
    .click();
  await row(ctx.sue, `visitor1@${D}`).locator('button[aria-pressed="false"]').waitFor();
});

t('axe-core: no violation on the widget, the agent console with a conversation, the supervisor console', async (ctx) => {
  const widget = await newPage(ctx);
  await widget.goto(`${ctx.web.url}/shop.html`);
  await widget.getByRole('button', { name: /客服 Chat/ }).click();
  await widget.locator('.cw-status[data-online="true"]').waitFor();
  await widget.getByLabel('Your message').fill('Is the blue teapot in stock?');
  await widget.getByLabel('Your message').press('Enter');
  await widget.locator('.cw-me:is([data-state="sent"], [data-state="read"])').first().waitFor();
  await widget.locator('.cw-system, .cw-them').first().waitFor(); // the queue notice or the welcome
  const phone = await newPage(ctx, { width: 375, height: 800 });
  await signIn(phone, ctx, 'sue');
  await row(phone, `visitor1@${D}`).waitFor();
  const box = await phone.locator('#supervisor').boundingBox();
  const scroll = await phone.evaluate(() => document.documentElement.scrollWidth);
  const wide = await phone.evaluate(() =>
    [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > 376 && ![...e.children].some((c) => c.getBoundingClientRect().right > 376))
      .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`),
  );
  assert.ok(
    box && box.x >= 0 && box.x + box.width <= 375 && scroll <= 375,
    `the page fits a phone: panel ${JSON.stringify(box)}, scroll width ${scroll}, too wide: ${wide.join(' ')}`,
  );
  await phone.screenshot({ path: path.join(OUT, 'supervisor-console-phone.png'), fullPage: true });
  for (const [name, page] of [
    ['widget', widget],
    ['agent console', ctx.agent],
    ['supervisor console', ctx.sue],
    ['supervisor console (phone)', phone],
  ] as const) {
    const v = await axeViolations(page);
    assert.equal(v, [], `axe on the ${name}: ${v.join('; ')}`);
  }
  for (const p of [widget, ctx.agent, ctx.sue, phone]) assert.equal((p as Page & { errors: string[] }).errors, [], 'no page errors');
});

t('take over: the session comes to the supervisor console as a tab with its history', async (ctx) => {
  await row(ctx.sue, `visitor1@${D}`)
    .getByRole('button', { name: /^Take over/ })
    .click();
  const tab = ctx.sue.getByRole('tab', { name: /visitor1/ });
  await tab.waitFor();
  await tab.click();
  await ctx.sue.locator('#log .msg .text', { hasText: 'it was due on Monday' }).waitFor(); // replayed
  await ctx.sue.locator(`#supervisor tr[data-visitor="visitor1@${D}"] td`, { hasText: `sue@${D}` }).waitFor();
  await ctx.sue.getByLabel('Reply').fill('A supervisor here: it is on its way.');
  await ctx.sue.getByRole('button', { name: 'Send' }).click();
  await ctx.visitor1.waitFor((el) => bodyOf(el) === 'A supervisor here: it is on its way.' && el.attrs.realfrom === `sue@${D}`);
});

// Refreshing the README's copies is a choice (UPDATE_SCREENSHOTS=1): a plain test run leaves the tree clean.
t('docs: the supervisor screenshots were taken, and are copied next to the README when asked', () => {
  for (const f of SCREENSHOTS) assert.ok(fs.statSync(path.join(OUT, f), { throwIfNoEntry: false })?.size, `${f} taken this run`);
  if (!process.env.UPDATE_SCREENSHOTS) return;
  const docs = path.join(repoRoot, 'docs', 'screenshots');
  fs.mkdirSync(docs, { recursive: true });
  for (const f of SCREENSHOTS) fs.copyFileSync(path.join(OUT, f), path.join(docs, f));
});

t.run();
