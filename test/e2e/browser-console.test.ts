// The agent console a team works in all day, in a real browser (Debian's chromium via playwright-core) against a
// real ejabberd (WebSocket listener, mod_mam archiving every message) with mod_consult and the real sidecar process.
// visitor1 and visitor2 are plain XMPP clients; test01 serves them in the console. visitor1 has a first session,
// closed and rated 5; its next message carries a context child: the visitor panel shows the name, page and product
// and the earlier session with its rating. With the console tab in the background a visitor's line gives the title
// badge "(1)" and a desktop notification (window.Notification counted). `#` in the reply box lists the shop's canned
// replies; picking one sends `#hello` and the visitor gets the shop's text. Tag and note buttons answer in the
// notices and the note never reaches the visitor. Alt+ArrowDown moves between tabs. A reload (and sign-in) shows the
// conversations again, from ejabberd's archive (XEP-0313). Screenshot: test-output/browser/agent-console-desk.png.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startWebServer, type WebServer } from '../../scripts/web-server.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import type { Element, TestClient } from '../support/xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(repoRoot, 'test-output', 'browser');
const D = 'localhost';
const VD = `visitors.${D}`;
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const STEP = 15_000; // any single wait in a page
const NS_CONTEXT = 'urn:xmpp:consult:context:0';

interface Ctx {
  stack: Stack;
  web: WebServer;
  browser: Browser;
  context: BrowserContext;
  page: Page;
  visitor1: TestClient;
  visitor2: TestClient;
}
const t = suite<Ctx>('browser: the agent console (notifications, visitor panel, canned, tags, notes, archive)');

setUpSuite(t, async (ctx) => {
  fs.mkdirSync(OUT, { recursive: true });
  execFileSync('npm', ['run', '-s', 'build:web'], { cwd: repoRoot, stdio: 'inherit' });
  ctx.stack = await startStack({
    domain: D,
    password: PASSWORD,
    config: {
      systemJid: `admin@${D}`,
      archive: { ratingWindowSec: 600 },
      shops: [
        {
          jid: SHOP,
          name: 'Kettle shop',
          language: 'en',
          agents: [{ jid: `test01@${D}`, maxSessions: 5 }],
          canned: { hello: 'Hello {visitor}, welcome to {shop}!', hours: 'We answer from 9 to 5.' },
        },
      ],
    },
    shimOptions: { timeout: 1000, failure_policy: 'reject' },
    visitors: { visitorDomain: VD, visitorRegistrationTimeoutSec: 'infinity' },
    // The console's history after a reload: every account's messages archived (mod_mam's default is `never`).
    extraModules: { mod_mam: { default: 'always' } },
    users: ['shop_2', 'test01', 'visitor1', 'visitor2'],
    sidecarStartMs: 90_000,
  });
  ctx.web = await startWebServer({
    port: 0,
    service: `ws://127.0.0.1:${ctx.stack.ejabberd.httpPort}/ws`,
    domain: D,
    visitorDomain: VD,
    shops: [SHOP],
  });
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 30_000 });
  ctx.context = await ctx.browser.newContext({ viewport: { width: 1280, height: 800 } });
  await ctx.context.grantPermissions(['notifications'], { origin: ctx.web.url });
  // Count desktop notifications: the page's Notification, wrapped (permission as the browser grants it).
  await ctx.context.addInitScript(COUNT_NOTIFICATIONS);
  ctx.page = await ctx.context.newPage();
  ctx.page.setDefaultTimeout(STEP);
  ctx.visitor1 = await ctx.stack.connect('visitor1', 'web');
  ctx.visitor2 = await ctx.stack.connect('visitor2', 'web');
});

t.after(async (ctx) => {
  await ctx.context?.close().catch(() => undefined);
  await ctx.browser?.close().catch(() => undefined);
  await ctx.web?.close();
  await ctx.stack?.stop();
});

async function signIn(page: Page, ctx: Ctx): Promise<void> {
  await page.goto(`${ctx.web.url}/console.html`);
  await page.getByLabel('Account').fill('test01');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#conn[data-online="true"]').waitFor();
  await page.locator('#app').waitFor({ state: 'visible' });
}

let ids = 0;
const consult = (text: string, extra = '') => {
  const id = `BC-${++ids}`;
  return {
    id,
    xml: `<message type='consult' to='${SHOP}'><body msgType='1' maType='6' id='${id}'>${text}</body>${extra}</message>`,
  };
};
/**
 * Counts desktop notifications: the page's Notification wrapped (permission as the browser grants it). A string:
 * tsx's transpiled helpers do not exist in the page.
 */
const COUNT_NOTIFICATIONS = `(() => {
  const Real = window.Notification;
  window.shown = [];
  function Counted(title, o) { window.shown.push({ title, body: o && o.body }); }
  Counted.prototype.close = function () {};
  Object.defineProperty(Counted, 'permission', { get: () => Real.permission });
  Counted.requestPermission = () => Real.requestPermission();
  window.Notification = Counted;
})();`;
const bodyOf = (el: Element) => el.getChildText('body') ?? '';

/** The page pretends to be in the background (or back in front): visibilityState and the event. */
async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate(`(() => {
    const h = ${hidden};
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    document.dispatchEvent(new Event('visibilitychange'));
  })()`);
}
const shownCount = (page: Page) => page.evaluate('window.shown.length') as Promise<number>;

const tab = (page: Page, local: string) => page.getByRole('tab', { name: new RegExp(local) });
const log = (page: Page) => page.locator('#log');

t('a first session of visitor1, closed from the console and rated 5', async (ctx) => {
  const { page } = ctx;
  await signIn(page, ctx);
  const first = consult('first visit: where is my kettle?');
  await ctx.visitor1.send(first.xml);
  await tab(page, 'visitor1').click();
  await log(page).getByText('first visit: where is my kettle?').waitFor();
  await page.getByRole('button', { name: 'Close conversation' }).click();
  await tab(page, 'visitor1').filter({ hasText: 'closed' }).waitFor();
  await ctx.visitor1.waitFor((el) => el.getChild('rating', 'urn:xmpp:consult:rating:0') !== undefined);
  await ctx.visitor1.send(consult('5').xml);
  await ctx.visitor1.waitFor((el) => /5/.test(bodyOf(el)) && /thank/i.test(bodyOf(el)));
});

t('the visitor panel shows the context of the next message and the earlier session with its rating', async (ctx) => {
  const { page } = ctx;
  const ctxChild = `<context xmlns='${NS_CONTEXT}'><name>Ann Lee</name><page>https://shop.example/p/42</page><field var='product'>Blue kettle</field></context>`;
  const m = consult('is this in stock?', ctxChild);
  await ctx.visitor1.send(m.xml);
  await log(page).getByText('is this in stock?').waitFor();
  const panel = page.locator('#visitor-panel');
  await panel.locator('dd[data-key="name"]', { hasText: 'Ann Lee' }).waitFor();
  assert.is(await panel.locator('dd[data-key="page"] a').getAttribute('href'), 'https://shop.example/p/42');
  assert.is(await panel.locator('dd[data-key="product"]').textContent(), 'Blue kettle');
  const earlier = panel.locator('.earlier li');
  await earlier.first().waitFor();
  assert.is(await earlier.count(), 1, 'one earlier session');
  assert.match((await earlier.first().textContent()) ?? '', /test01.*rated 5\/5.*first visit: where is my kettle\?/);
  // The /history answer goes to the panel, not into the conversation.
  assert.not.ok(((await log(page).textContent()) ?? '').includes('Earlier sessions'));
});

t('in the background a visitor line gives the title badge and a desktop notification', async (ctx) => {
  const { page } = ctx;
  assert.is(await page.title(), 'Agent console');
  assert.is(await shownCount(page), 0);
  await setHidden(page, true);
  await ctx.visitor1.send(consult('hello? anyone there?').xml);
  await page.waitForFunction(`document.title.startsWith('(1) ')`);
  await page.waitForFunction('window.shown.length > 0');
  assert.equal(await page.evaluate('window.shown'), [{ title: 'visitor1 · shop_2', body: 'hello? anyone there?' }]);
  await setHidden(page, false);
  await page.waitForFunction(`document.title === 'Agent console'`);
});

t('`#` in the reply box lists the canned replies; picking one sends #hello and the visitor gets the shop text', async (ctx) => {
  const { page } = ctx;
  const input = page.getByLabel('Reply', { exact: true });
  await input.focus();
  await page.keyboard.type('#');
  const options = page.getByRole('listbox', { name: 'Canned replies' }).getByRole('option');
  await options.first().waitFor();
  assert.is(await options.count(), 2);
  assert.equal([await options.nth(0).getAttribute('data-name'), await options.nth(1).getAttribute('data-name')], ['hello', 'hours']);
  await page.keyboard.type('he');
  await page.waitForFunction(`document.querySelectorAll('#canned-list [role="option"]').length === 1`);
  await page.keyboard.press('Enter');
  const got = await ctx.visitor1.waitFor((el) => bodyOf(el).startsWith('Hello '), STEP);
  assert.is(bodyOf(got), 'Hello Ann Lee, welcome to Kettle shop!');
  await log(page).locator('li.me[data-state="sent"]', { hasText: '#hello' }).waitFor();
  assert.is(await input.inputValue(), '');
});

t('tag and note: answered in the notices, the note never reaches the visitor', async (ctx) => {
  const { page } = ctx;
  const field = page.getByLabel('Tag or note');
  await field.fill('vip');
  await page.getByRole('button', { name: 'Add tag' }).click();
  await page.locator('#notices li', { hasText: /Tags of the conversation with visitor1@localhost: vip$/ }).waitFor();
  await field.fill('called her back about the kettle');
  await page.getByRole('button', { name: 'Add note' }).click();
  await log(page).getByText('note: called her back about the kettle').waitFor();
  await page.locator('#notices li', { hasText: 'Note kept (visitor1@localhost does not see it).' }).waitFor();
  const marker = consult('after the note');
  await ctx.visitor1.send(marker.xml);
  await log(page).getByText('after the note').waitFor();
  assert.not.ok(
    ctx.visitor1.received.some((el) => bodyOf(el).includes('called her back') || bodyOf(el).includes('/note')),
    'the visitor got nothing of the note',
  );
});

t('Alt+ArrowDown moves to the next tab; a reload shows the conversations again, from the archive', async (ctx) => {
  const { page } = ctx;
  await ctx.visitor2.send(consult('visitor two here').xml);
  await tab(page, 'visitor2').waitFor();
  await tab(page, 'visitor1').click();
  await page.keyboard.press('Alt+ArrowDown');
  await page.locator('[role="tab"][aria-selected="true"][data-visitor^="visitor2@"]').waitFor();
  await page.keyboard.press('Control+BracketLeft');
  await page.locator('[role="tab"][aria-selected="true"][data-visitor^="visitor1@"]').waitFor();
  await page.screenshot({ path: path.join(OUT, 'agent-console-desk.png') });

  await page.reload();
  await signIn(page, ctx);
  await tab(page, 'visitor1').click();
  for (const line of ['first visit: where is my kettle?', 'is this in stock?', '#hello', 'after the note'])
    await log(page).getByText(line, { exact: true }).first().waitFor();
  await tab(page, 'visitor2').click();
  await log(page).getByText('visitor two here').waitFor();
  // Restored lines are not unread and the sessions are still open (from /sessions).
  assert.is(await page.title(), 'Agent console');
  assert.is(await tab(page, 'visitor2').filter({ hasText: 'closed' }).count(), 0);
  const id = consult('still here after the reload');
  await ctx.visitor2.send(id.xml);
  await log(page).getByText('still here after the reload').waitFor();
  await page.getByLabel('Reply', { exact: true }).fill('yes, I see everything');
  await page.keyboard.press('Enter');
  await ctx.visitor2.waitFor((el) => bodyOf(el) === 'yes, I see everything', STEP);
});

t.run();
