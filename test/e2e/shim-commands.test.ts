// The shim's ejabberd commands, run with ejabberdctl against a real ejabberd whose mod_consult is
// linked to the real sidecar: `consult_status` shows the link connected with the sidecar's id, the
// shops it owns and what became of the stanzas, and shows the link down once the sidecar stopped;
// `consult_owned` lists the owned shops; the commands go when mod_consult stops.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout } from '../../scripts/ejabberd-config.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { bodyId, type Element } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const SIDECAR_ID = 'desk-commands';

interface Ctx {
  stack: Stack;
}
const t = suite<Ctx>('e2e: ejabberdctl consult_status and consult_owned');

setUpSuite(t, async (ctx) => {
  ctx.stack = await startStack({
    domain: D,
    config: {
      sidecarId: SIDECAR_ID,
      shops: [{ jid: SHOP, name: 'Day shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
    },
    shimOptions: { timeout: 2000, failure_policy: 'reject' },
    users: ['visitor1', 'test01'],
  });
});

t.after(async (ctx) => {
  await ctx.stack?.stop();
});

/** `ejabberdctl <command>`'s output; fails the test when ejabberdctl does. */
async function ctl(ctx: Ctx, command: string): Promise<string> {
  const r = await ctx.stack.ejabberd.ctl(command);
  assert.is(r.code, 0, `ejabberdctl ${command} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The value on the line `  <label>: <value>` of consult_status's output. */
const field = (status: string, label: string) => status.match(new RegExp(`^  ${label}:\\s+(.*)$`, 'm'))?.[1];

const consult = (id: string) => `<message type='consult' to='${SHOP}'><body msgType='1' id='${id}'>hello</body></message>`;

t("consult_status shows the link connected, the sidecar's id, its shops and the stanza it decided", async (ctx) => {
  // The watch list (id and shops) comes a moment after the link.
  const status = await waitUntil('the watch list in consult_status', async () => {
    const out = await ctl(ctx, 'consult_status');
    return field(out, 'shops owned') === '1' && out;
  });
  assert.match(status, /^mod_consult on consult_test_\w+@localhost: 1 sidecar connection$/m);
  assert.match(status, new RegExp(`^consult_grpc \\(127\\.0\\.0\\.1:${ctx.stack.sidecar.port}\\)$`, 'm'));
  assert.is(field(status, 'link'), 'connected');
  assert.is(field(status, 'sidecar id'), SIDECAR_ID);
  assert.is(field(status, 'breaker'), 'closed (0 timeouts in a row)');
  assert.is(field(status, 'stanzas'), '0 forwarded, 0 verdicts, 0 timed out, 0 failed, 0 waiting now');

  const visitor = await ctx.stack.connect('visitor1');
  await visitor.send(consult('CMD-1'));
  await visitor.waitFor((el) => el.attrs.type === 'mstat' && bodyId('CMD-1')(el));
  assert.is(field(await ctl(ctx, 'consult_status'), 'stanzas'), '1 forwarded, 1 verdicts, 0 timed out, 0 failed, 0 waiting now');
});

t('consult_owned lists the shop under the connection of the sidecar that owns it', async (ctx) => {
  const owned = await ctl(ctx, 'consult_owned');
  assert.match(owned, new RegExp(`^consult_grpc \\(127\\.0\\.0\\.1:\\d+, sidecar ${SIDECAR_ID}\\): owns 1 shop$`, 'm'));
  assert.match(owned, new RegExp(`^  ${SHOP}$`, 'm'));
});

t('once the sidecar stopped, consult_status shows the link down, no shops, and the stanza refused at once', async (ctx) => {
  await ctx.stack.sidecar.kill();
  const status = await waitUntil('the link down in consult_status', async () => {
    const out = await ctl(ctx, 'consult_status');
    return /^down \(connection refused\)/.test(field(out, 'link') ?? '') && out;
  });
  assert.is(field(status, 'sidecar id'), `${SIDECAR_ID} (when last connected)`);
  assert.is(field(status, 'shops owned'), '0');
  assert.match(field(status, 'link') ?? '', /, retry \d+/);

  // Still a watched shop (the last watch list counts), but no connected sidecar owns it.
  const visitor = await ctx.stack.connect('visitor1', 'r2');
  await visitor.send(consult('CMD-2'));
  await visitor.waitFor((el) => el.attrs.type === 'error' && bodyId('CMD-2')(el));
  assert.is(field(await ctl(ctx, 'consult_status'), 'no owner'), '1');
  assert.match(await ctl(ctx, 'consult_owned'), /^consult_grpc \(127\.0\.0\.1:\d+, sidecar desk-commands\): down: owns nothing here$/m);
});

t('the commands go when mod_consult stops on its last host', async (ctx) => {
  const { ejabberd } = ctx.stack;
  const configPath = nodeLayout(ejabberd.dir).configPath;
  const yml = fs.readFileSync(configPath, 'utf8');
  const without = yml.replace(/^ {2}mod_consult:\n(?: {4}.*\n)*/m, '');
  assert.not.equal(without, yml, 'mod_consult found in ejabberd.yml');
  fs.writeFileSync(configPath, without);
  const reload = await ejabberd.ctl('reload_config');
  assert.is(reload.code, 0, reload.stdout + reload.stderr);
  for (const command of ['consult_status', 'consult_owned']) {
    const r = await ejabberd.ctl(command);
    assert.is(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^Error: unknown command '${command}'`, 'm'));
  }
});

t.run();
