// The web side in a real browser (Debian's chromium, headless, driven by playwright-core) against a
// real ejabberd (WebSocket listener, visitor vhost) with mod_consult and the real sidecar process:
// the visitor widget on the demo shop page and the agent console, each in its own browser context.
// Screenshots go to test-output/browser/ (gitignored); UPDATE_SCREENSHOTS=1 also copies them to docs/screenshots/ for the README.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startWebServer, type WebServer } from '../../scripts/web-server.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { marker, type TestClient } from '../support/xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(repoRoot, 'test-output', 'browser');
const D = 'localhost';
const VD = `visitors.${D}`;
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const STEP = 10_000; // any single wait in a page
const SCREENSHOTS = ['visitor-widget.png', 'agent-console.png', 'visitor-widget-phone.png'];

interface Ctx {
  stack: Stack;
  web: WebServer;
  browser: Browser;
  contexts: BrowserContext[];
  /** Every agent console signed in so far, in any test: an agent's resources all get its visitors' messages. */
  consoles: { user: string; page: Page }[];
}
const t = suite<Ctx>('browser: visitor widget and agent console');

setUpSuite(t, async (ctx) => {
  ctx.contexts = [];
  ctx.consoles = [];
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of SCREENSHOTS) fs.rmSync(path.join(OUT, f), { force: true }); // the docs case checks this run's
  if (!fs.existsSync(path.join(repoRoot, 'dist-web', 'widget.js')))
    execFileSync('npm', ['run', '-s', 'build:web'], { cwd: repoRoot, stdio: 'inherit' });
  ctx.stack = await startStack({
    domain: D,
    password: PASSWORD,
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
        },
      ],
    },
    shimOptions: { timeout: 1000, failure_policy: 'reject' },
    visitors: { visitorDomain: VD, visitorRegistrationTimeoutSec: 'infinity', visitorShaperRate: 1000 },
    users: ['shop_2', 'test01', 'test02'],
  });
  ctx.web = await startWebServer({
    port: 0,
    service: `ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}/ws`,
    domain: D,
    visitorDomain: VD,
    shops: [SHOP],
  });
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 30_000 });
});

t.after(async (ctx) => {
  await Promise.all((ctx.contexts ?? []).map((c) => c.close().catch(() => undefined)));
  await ctx.browser?.close().catch(() => undefined);
  await ctx.web?.close();
  await ctx.stack?.stop();
});

async function newPage(ctx: Ctx, viewport = { width: 1100, height: 760 }): Promise<Page> {
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
  ctx.consoles.push({ user, page });
}

/**
 * The first of `consoles` to show a tab for the visitor `jid` (whichever agent the shop chose), within STEP;
 * fails saying which consoles were watched when none does.
 */
async function consoleWithTab(consoles: { user: string; page: Page }[], jid: string): Promise<{ user: string; page: Page }> {
  const name = new RegExp(jid.split('@')[0]!);
  try {
    return await Promise.any(
      consoles.map((c) =>
        c.page
          .getByRole('tab', { name })
          .waitFor({ timeout: STEP })
          .then(() => c),
      ),
    );
  } catch {
    throw new Error(`no agent console shows a tab for ${jid} within ${STEP} ms (watched: ${consoles.map((c) => c.user).join(', ')})`);
  }
}

/** Waits for `locator` to be visible; fails with `what` when it is not within STEP. */
async function visible(locator: Locator, what: string): Promise<void> {
  await locator
    .first()
    .waitFor({ state: 'visible' })
    .catch((e: Error) => {
      throw new Error(`${what}: not visible within ${STEP} ms (${e.message.split('\n')[0]})`);
    });
}

async function openWidget(page: Page, ctx: Ctx): Promise<string> {
  await page.goto(`${ctx.web.url}/shop.html`);
  await page.getByRole('button', { name: /客服 Chat/ }).click();
  await page.locator('.cw-status[data-online="true"]').waitFor();
  return (await page.locator('.cw-root').getAttribute('data-jid'))!;
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByLabel('Your message').fill(text);
  await page.getByLabel('Your message').press('Enter');
}

/** axe-core's violations of serious or critical impact (run in the page; CSP does not apply to CDP evaluation). */
async function axeViolations(page: Page): Promise<string[]> {
  const source = fs.readFileSync(path.join(repoRoot, 'node_modules/axe-core/axe.min.js'), 'utf8');
  await page.evaluate(`${source}\n;true`);
  const res = await page.evaluate(async () => {
    const r = await (
      window as unknown as {
        axe: { run(o?: unknown): Promise<{ violations: Array<{ id: string; impact: string; nodes: unknown[]; help: string }> }> };
      }
    ).axe.run({ resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, n: v.nodes.length, help: v.help }));
  });
  return res.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}, ${v.n}): ${v.help}`);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(OUT, `${name}.png`) });
}

t('the static server: content types, caching, CSP', async (ctx) => {
  const page = await fetch(`${ctx.web.url}/shop.html`);
  assert.is(page.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.is(page.headers.get('cache-control'), 'no-cache');
  assert.match(page.headers.get('content-security-policy') ?? '', `script-src 'self'`);
  assert.match(page.headers.get('content-security-policy') ?? '', `connect-src 'self' ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}`);
  const js = await fetch(`${ctx.web.url}/widget.js`);
  assert.is(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.match(js.headers.get('cache-control') ?? '', 'max-age=');
  const again = await fetch(`${ctx.web.url}/widget.js`, { headers: { 'if-none-match': js.headers.get('etag')! } });
  assert.is(again.status, 304);
  assert.is((await fetch(`${ctx.web.url}/../package.json`)).status, 404);
  assert.is((await fetch(`${ctx.web.url}/%2e%2e/package.json`)).status, 404);
  assert.is((await fetch(`${ctx.web.url}/widget.js`, { method: 'POST' })).status, 405);
  const cfg = (await (await fetch(`${ctx.web.url}/config.json`)).json()) as Record<string, unknown>;
  assert.equal(cfg, { service: `ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}/ws`, domain: D, visitorDomain: VD, shops: [SHOP] });
});

t('seed flow between the widget and the console: welcome, delivered tick, reply, readmarks; a reload keeps the visitor', async (ctx) => {
  const agent = await newPage(ctx);
  await signIn(agent, ctx, 'test01');
  const visitor = await newPage(ctx);
  const jid = await openWidget(visitor, ctx);
  assert.match(jid, new RegExp(`^v[0-9a-f]{20}@${VD.replace(/\./g, '\\.')}$`), 'a random account on the visitor vhost');

  await say(visitor, '你好，我想问一下茶具');
  // The mstat ack: delivered tick (or already read: the console shows the first conversation at once).
  await visitor.locator('.cw-me:is([data-state="sent"], [data-state="read"])').first().waitFor();
  await visitor.locator('.cw-them .cw-text', { hasText: '张滨测试店铺' }).waitFor(); // the welcome

  // The console: a tab for the visitor, its message, unread count cleared when shown.
  const tab = agent.getByRole('tab', { name: new RegExp(jid.split('@')[0]!) });
  await tab.waitFor();
  await tab.click();
  await agent.locator('#log .msg.visitor .text', { hasText: '你好，我想问一下茶具' }).waitFor();
  // The agent has seen it: its readmark reaches the widget (read tick).
  await visitor.locator('.cw-me[data-state="read"]').first().waitFor();

  await agent.getByLabel('Reply').fill('您好！茶具有现货，六只杯。');
  await agent.getByRole('button', { name: 'Send' }).click();
  await agent.locator('#log .msg.me:is([data-state="sent"], [data-state="read"])').first().waitFor(); // acked
  await visitor.locator('.cw-them .cw-text', { hasText: '您好！茶具有现货，六只杯。' }).waitFor();
  await visitor.locator('.cw-them .cw-from', { hasText: 'test01' }).waitFor();
  // The widget is open and visible: the visitor's readmark marks the reply read in the console.
  await agent.locator('#log .msg.me[data-state="read"]').first().waitFor();

  await shot(visitor, 'visitor-widget');
  await shot(agent, 'agent-console');
  const phone = await newPage(ctx, { width: 375, height: 740 });
  const phoneJid = await openWidget(phone, ctx);
  await say(phone, 'Hello from a phone');
  await phone.locator('.cw-them .cw-text', { hasText: '张滨测试店铺' }).waitFor();
  await shot(phone, 'visitor-widget-phone');
  const box = await phone.locator('.cw-panel').boundingBox();
  assert.ok(box && box.width <= 375 && box.x >= 0, `the panel fits a phone: ${JSON.stringify(box)}`);
  assert.is.not(phoneJid, jid, 'another browser, another visitor');

  for (const [name, page] of [
    ['widget', visitor],
    ['console', agent],
    ['widget (phone)', phone],
  ] as const) {
    const v = await axeViolations(page);
    assert.equal(v, [], `axe on the ${name}: ${v.join('; ')}`);
  }

  // A returning visitor: same browser, page reloaded: the same JID and the history.
  await visitor.reload();
  await visitor.getByRole('button', { name: /客服 Chat/ }).click();
  await visitor.locator('.cw-status[data-online="true"]').waitFor();
  assert.is(await visitor.locator('.cw-root').getAttribute('data-jid'), jid, 'identity kept across reloads');
  await visible(visitor.locator('.cw-text', { hasText: '您好！茶具有现货，六只杯。' }), 'history kept');
  await say(visitor, '还在吗？');
  await agent.locator('#log .msg.visitor .text', { hasText: '还在吗？' }).waitFor(); // same session, same agent
  // A second welcome would have been routed to the widget before the message reached the console; the
  // agent's answer, on the same route (shop to visitor), comes after it.
  await agent.getByLabel('Reply').fill('在的。');
  await agent.getByRole('button', { name: 'Send' }).click();
  await visitor.locator('.cw-them .cw-text', { hasText: '在的。' }).waitFor();
  assert.is(await visitor.locator('.cw-them .cw-text', { hasText: '张滨测试店铺' }).count(), 1, 'no second welcome: same session');
  for (const p of [visitor, agent, phone]) assert.equal((p as Page & { errors: string[] }).errors, [], 'no page errors');
});

t('XSS: markup in a message is shown as text on both pages and never runs', async (ctx) => {
  const agent = await newPage(ctx);
  await signIn(agent, ctx, 'test02');
  await agent.selectOption('#status', 'standard');
  const visitor = await newPage(ctx);
  const jid = await openWidget(visitor, ctx);
  const evil = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`;
  await say(visitor, evil);
  await visitor.locator('.cw-me:is([data-state="sent"], [data-state="read"])').first().waitFor();
  // The shop picks the agent (least-busy): read whichever console has the tab, this test's or an earlier one's.
  const { page: holder } = await consoleWithTab(ctx.consoles, jid);
  await holder.getByRole('tab', { name: new RegExp(jid.split('@')[0]!) }).click();
  const shown = holder.locator('#log .msg.visitor .text', { hasText: 'window.__pwned' }).last();
  await shown.waitFor();
  assert.is(await shown.textContent(), evil, 'the console shows the markup as text');
  assert.is(await holder.locator('#log img, #log script').count(), 0);
  assert.is(await holder.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
  await holder.getByLabel('Reply').fill('<b onmouseover=alert(1)>bold?</b>');
  await holder.getByRole('button', { name: 'Send' }).click();
  await visitor.locator('.cw-them .cw-text', { hasText: '<b onmouseover=alert(1)>bold?</b>' }).waitFor();
  const mine = visitor.locator('.cw-me .cw-text').last();
  assert.is(await mine.textContent(), evil, 'the widget shows the markup as text');
  assert.is(await visitor.locator('.cw-log img, .cw-log script, .cw-log b').count(), 0);
  assert.is(await visitor.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
  await shot(visitor, 'visitor-xss');
});

t('ejabberd: a visitor may not message an agent directly, and a flood from a visitor is throttled', async (ctx) => {
  const user = `vtest${crypto.randomBytes(5).toString('hex')}`;
  await ctx.stack.ejabberd.api('register', { user, host: VD, password: PASSWORD });
  const v = await ctx.stack.connect(user, 'web', VD);
  const a = await ctx.stack.connect('test01', 'probe');
  await v.send(`<message to='test01@${D}' type='chat' id='direct-1'><body>psst, outside the shop</body></message>`);
  const err = await v.waitFor((el) => el.attrs.type === 'error' && el.attrs.id === 'direct-1');
  assert.ok(err.getChild('error')?.getChild('policy-violation'), err.toString());
  // The same route with nothing to refuse (no body) is open, and delivers after the refused one would have.
  await marker(v, a);
  assert.not.ok(
    a.received.some((el) => el.getChildText('body') === 'psst, outside the shop'),
    'never reached the agent',
  );

  // The same 30 stanzas (12 KB) to oneself from the visitor, then from a staff account, each followed by a ping.
  // The visitor's stream is read at 1000 B/s (burst 4000), the staff's at once: the staff's 30 come back and its
  // ping is answered while the server is still reading the visitor's.
  const flood = async (c: TestClient, tag: string) => {
    for (let i = 0; i < 30; i++)
      await c.send(`<message to='${c.bareJid}' type='headline' id='${tag}-${i}'><body>${'x'.repeat(400)}</body></message>`);
  };
  const echoes = (c: TestClient, tag: string) =>
    c.received.filter((el) => el.attrs.type === 'headline' && el.attrs.id?.startsWith(`${tag}-`)).map((el) => el.attrs.id);
  const all = (tag: string) => Array.from({ length: 30 }, (_, i) => `${tag}-${i}`);
  await flood(v, 'v');
  let visitorRead = false;
  const visitorPing = v.settle(60_000).then(() => {
    visitorRead = true;
  });
  await flood(a, 's');
  await a.settle();
  const visitorSoFar = echoes(v, 'v').length;
  assert.equal(echoes(a, 's'), all('s'), 'staff: all 30 back, in order, before its ping is answered');
  assert.not.ok(visitorRead, "the visitor's ping is not answered yet");
  assert.ok(visitorSoFar < 30, `the visitor is held back: ${visitorSoFar} of its 30 back when the staff's ping was answered`);
  await visitorPing;
  assert.equal(echoes(v, 'v'), all('v'), 'visitor: all 30 back, in order, before its ping is answered');
});

t('transfer between two agent consoles: the new agent gets the history, the visitor the notice, the old tab closes', async (ctx) => {
  const [c1, c2] = [await newPage(ctx), await newPage(ctx)];
  await signIn(c1, ctx, 'test01');
  await signIn(c2, ctx, 'test02');
  const visitor = await newPage(ctx);
  const jid = await openWidget(visitor, ctx);
  const name = new RegExp(jid.split('@')[0]!);
  await say(visitor, 'transfer me please');
  const serving = await consoleWithTab(
    [
      { user: 'test01', page: c1 },
      { user: 'test02', page: c2 },
    ],
    jid,
  );
  const [from, to, toUser] = serving.page === c1 ? [c1, c2, 'test02'] : [c2, c1, 'test01'];
  await from.getByRole('tab', { name }).click();
  await from.getByLabel('Transfer to').fill(toUser);
  await from.getByRole('button', { name: 'Transfer' }).click();
  await from.locator('.tab.closed', { hasText: jid.split('@')[0]! }).waitFor(); // acked: the old tab is closed
  await to.getByRole('tab', { name }).click();
  await to.locator('#log .msg.visitor .text', { hasText: 'transfer me please' }).waitFor(); // the history, replayed
  await visitor.locator('.cw-system .cw-text', { hasText: toUser }).waitFor(); // the visitor is told
  await to.getByLabel('Reply').fill('I have taken over.');
  await to.getByRole('button', { name: 'Send' }).click();
  await visitor.locator('.cw-them .cw-from', { hasText: toUser }).waitFor();
  await shot(to, 'agent-console-after-transfer');
});

t('rating: after the agent closes, the widget shows 1 to 5; a click sends the digit, is thanked, and the buttons go', async (ctx) => {
  const agent = await newPage(ctx);
  await signIn(agent, ctx, 'test01');
  const agent2 = await newPage(ctx);
  await signIn(agent2, ctx, 'test02');
  const visitor = await newPage(ctx);
  const jid = await openWidget(visitor, ctx);
  const name = new RegExp(jid.split('@')[0]!);
  await say(visitor, 'rate me');
  const { page: serving } = await consoleWithTab(
    [
      { user: 'test01', page: agent },
      { user: 'test02', page: agent2 },
    ],
    jid,
  );
  await serving.getByRole('tab', { name }).click();
  await serving.locator('#close-session').click();
  const rate = visitor.getByRole('group', { name: /Rate this conversation/ });
  await rate.waitFor();
  await rate.getByRole('button', { name: '4 / 5' }).click();
  await visitor.locator('.cw-system .cw-text', { hasText: '感谢您的评价（4 分）' }).waitFor();
  assert.is(await rate.count(), 0, 'the buttons are gone once used');
  await shot(visitor, 'visitor-widget-rating');
});

// Refreshing the README's copies is a choice (UPDATE_SCREENSHOTS=1 npm test): a plain test run leaves the tree clean.
t("docs: the README's screenshots were taken, and are copied next to it when asked", () => {
  for (const f of SCREENSHOTS) assert.ok(fs.statSync(path.join(OUT, f), { throwIfNoEntry: false })?.size, `${f} taken this run`);
  if (!process.env.UPDATE_SCREENSHOTS) return;
  const docs = path.join(repoRoot, 'docs', 'screenshots');
  fs.mkdirSync(docs, { recursive: true });
  for (const f of SCREENSHOTS) fs.copyFileSync(path.join(OUT, f), path.join(docs, f));
});

t.run();
