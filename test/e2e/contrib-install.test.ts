// End to end through the install path of the README: the shim's source goes into a private
// ejabberd's own ext_mod directory (make install-source), `ejabberdctl module_install
// mod_consult` compiles, installs and starts it (nothing on -pa, no beams copied by hand), the
// configuration comes from CONTRIB_MODULES_CONF_DIR/mod_consult.yml, and module_upgrade and
// module_uninstall work on the running node, and the installed module survives a restart.
// Everything lives in the test's temp dir.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { newShimCredential, startEjabberd, type Ejabberd } from '../support/ejabberd.js';
import { startSidecar, writeConfig, type SidecarProcess } from '../support/sidecar.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const PASSWORD = 'secret';
const HELPERS = ['mod_consult', 'consult_grpc', 'consult_pb', 'consult_hpack', 'consult_h2'];

interface Ctx {
  ejabberd: Ejabberd;
  sidecar: SidecarProcess;
  deadPort: number;
  visitor: TestClient;
  agent: TestClient;
}
const t = suite<Ctx>('e2e: mod_consult installed with ejabberdctl module_install');

t.before(async (ctx) => {
  const credential = newShimCredential();
  const configFile = writeConfig({
    grpc: { shims: [credential] },
    systemJid: `admin@${D}`,
    shops: [{ jid: SHOP, name: 'Contrib shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
  });
  ctx.sidecar = startSidecar(configFile, await freePort());
  await ctx.sidecar.waitForLog('sidecar listening');
  ctx.deadPort = await freePort(); // nothing listens there
  ctx.ejabberd = await startEjabberd({
    domain: D,
    credential,
    shimInstall: 'module_install',
    shimOptions: { sidecar_host: '127.0.0.1', sidecar_port: ctx.deadPort, timeout: 500, failure_policy: 'reject' },
  });
  await Promise.all(['visitor1', 'shop_2', 'test01'].map((u) => ctx.ejabberd.register(u, PASSWORD)));
  ctx.visitor = await connect(ctx, 'visitor1', 'web');
});

t.after(async (ctx) => {
  await Promise.all([ctx.visitor, ctx.agent].map((c) => c?.stop().catch(() => undefined)));
  await ctx.ejabberd?.stop();
  await ctx.sidecar?.kill();
});

const connect = (ctx: Ctx, username: string, resource: string) =>
  connectClient({ service: `xmpp://127.0.0.1:${ctx.ejabberd.c2sPort}`, domain: D, username, password: PASSWORD, resource });
const consult = (id: string, text: string) => `<message type='consult' to='${SHOP}'><body msgType='1' id='${id}'>${text}</body></message>`;
const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const mstat = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
const bounced = (id: string) => (el: Element) => el.attrs.type === 'error' && bodyId(id)(el);
const log = (ctx: Ctx) => fs.readFileSync(ctx.ejabberd.logFile, 'utf8');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** ejabberd's log handler writes a moment after the event: poll. */
async function waitForLog(ctx: Ctx, re: RegExp, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = log(ctx)
      .split('\n')
      .find((l) => re.test(l));
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no ejabberd log line matching ${re} in ${timeoutMs} ms:\n${ctx.ejabberd.logTail(30)}`);
    await sleep(100);
  }
}

t("module_install compiled the source into the node's ext_mod dir and started it with the CONTRIB_MODULES_CONF_DIR config", async (ctx) => {
  const { ejabberd } = ctx;
  const installed = await ejabberd.ctl('modules_installed');
  assert.match(installed.stdout, /^mod_consult\t/m);
  const lib = path.join(ejabberd.modulesDir, 'mod_consult');
  for (const m of HELPERS) assert.ok(fs.existsSync(path.join(lib, 'ebin', `${m}.beam`)), `${m}.beam installed`);
  assert.ok(fs.existsSync(path.join(lib, 'conf', 'mod_consult.yml')), "the module's default config installed");
  assert.equal(fs.readdirSync(nodeLayout(ejabberd.dir).ebinDir), [], "nothing on -pa: ext_mod's copy is the only one");

  // modules.d/mod_consult.yml replaced conf/mod_consult.yml (port 50051): the shim tries the dead port.
  await waitForLog(ctx, new RegExp(`consult_grpc: sidecar 127\\.0\\.0\\.1:${ctx.deadPort} unavailable`));
  assert.not.match(log(ctx), /127\.0\.0\.1:50051/);

  // The hooks are live: with no sidecar, consult messages bounce (failure_policy: reject),
  // and a burst of failures is one warning, not one per message.
  for (const id of ['DOWN-1', 'DOWN-2', 'DOWN-3']) {
    await ctx.visitor.send(consult(id, 'anyone?'));
    const err = await ctx.visitor.waitFor(bounced(id));
    assert.ok(err.getChild('error')!.getChild('service-unavailable'), err.toString());
  }
  const failure = /\[warning\].*consult: sidecar unavailable: a message from visitor1@localhost/;
  assert.match(await waitForLog(ctx, failure), 'was bounced with service-unavailable');
  await sleep(500); // the other two were logged before their bounces were sent, if at all
  const warnings = log(ctx)
    .split('\n')
    .filter((l) => failure.test(l));
  assert.is(warnings.length, 1, warnings.join('\n'));
});

t('a shim with a wrong token is refused by the sidecar: nothing routed, the failure policy applies, retries back off', async (ctx) => {
  const since = ctx.sidecar.lines.length;
  const logFrom = log(ctx).length;
  await ctx.ejabberd.configureShim({
    sidecar_host: '127.0.0.1',
    sidecar_port: ctx.sidecar.port,
    timeout: 500,
    failure_policy: 'reject',
    sidecar_token: 'not-the-token-the-sidecar-knows',
  });
  await ctx.sidecar.waitForLog('shim stream refused', since);
  await waitForLog(ctx, /\[warning\].*consult_grpc: the sidecar at 127\.0\.0\.1:\d+ refused this shim \(grpc-status 16 UNAUTHENTICATED/);

  await ctx.visitor.send(consult('REFUSED-1', 'let me in'));
  const err = await ctx.visitor.waitFor(bounced('REFUSED-1'));
  assert.ok(err.getChild('error')!.getChild('service-unavailable'), err.toString());
  assert.not.ok(
    ctx.sidecar.lines.slice(since).some((l) => l.includes('shim hello')),
    'the sidecar never took a hello',
  );
  assert.not.ok(
    ctx.sidecar.lines.slice(since).some((l) => l.includes('REFUSED-1')),
    'nor the stanza',
  );

  // One warning per attempt, and the attempts back off (100 ms, 200, 400, ... 5 s): no hot loop.
  await sleep(3000);
  const refusals = log(ctx)
    .slice(logFrom)
    .split('\n')
    .filter((l) => /refused this shim/.test(l)).length;
  const refused = ctx.sidecar.lines.slice(since).filter((l) => l.includes('shim stream refused')).length;
  assert.ok(refusals >= 3 && refusals <= 8, `${refusals} refusal warnings in ~3.5 s`);
  assert.ok(refused >= refusals - 1 && refused <= refusals + 1, `sidecar refused ${refused} streams, shim warned ${refusals} times`);
});

t('an edited modules.d/mod_consult.yml and reload_config point it at the sidecar: mstat ack, the agent gets the message', async (ctx) => {
  const since = ctx.sidecar.lines.length;
  // configureShim adds the node's own token again.
  await ctx.ejabberd.configureShim({ sidecar_host: '127.0.0.1', sidecar_port: ctx.sidecar.port, timeout: 500, failure_policy: 'reject' });
  await ctx.sidecar.waitForLog('shim hello', since);
  await waitForLog(ctx, /\[info\].*consult: sidecar settings changed, reconnecting to 127\.0\.0\.1:\d+ \(sidecar_token: replaced\)/);
  ctx.agent = await connect(ctx, 'test01', 'pc');

  await ctx.visitor.send(consult('UP-1', 'hello'));
  const ack = await ctx.visitor.waitFor(mstat('UP-1'));
  assert.is(ack.getChild('body')!.attrs.stat, 'sent');
  const relayed = await ctx.agent.waitFor(bodyId('UP-1'));
  assert.equal(
    [relayed.attrs.from, relayed.attrs.realfrom, relayed.attrs.qchatid, relayed.getChildText('body')],
    [SHOP, `visitor1@${D}`, '4', 'hello'],
  );
});

t('module_upgrade recompiles from the source and runs the new code of every module it ships', async (ctx) => {
  // A visible change in a helper module: the version the shim sends in its hello.
  const src = path.join(ctx.ejabberd.modulesDir, 'sources', 'mod_consult', 'src', 'consult_grpc.erl');
  const code = fs.readFileSync(src, 'utf8');
  const changed = code.replace(/-define\(SHIM_VERSION, <<"([^"]*)">>\)/, '-define(SHIM_VERSION, <<"$1-upgraded">>)');
  assert.ok(changed !== code, 'SHIM_VERSION found');
  fs.writeFileSync(src, changed);

  const since = ctx.sidecar.lines.length;
  const r = await ctx.ejabberd.ctl('module_upgrade', 'mod_consult');
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /has been installed/);
  await ctx.sidecar.waitForLog('-upgraded', since);
  await waitForLog(ctx, /\[info\].*consult: loaded the new code of consult_grpc/);

  await ctx.visitor.send(consult('UPGRADED-1', 'still there?'));
  await ctx.visitor.waitFor(mstat('UPGRADED-1'));
  await ctx.agent.waitFor(bodyId('UPGRADED-1'));
});

t("after an ejabberd restart the module starts again from ext_mod's directory, with the modules.d config", async (ctx) => {
  await Promise.all([ctx.visitor.stop(), ctx.agent.stop()]);
  const since = ctx.sidecar.lines.length;
  await ctx.ejabberd.restart();
  await ctx.sidecar.waitForLog('-upgraded', since); // the installed (upgraded) build, not a fresh one
  [ctx.visitor, ctx.agent] = await Promise.all([connect(ctx, 'visitor1', 'web'), connect(ctx, 'test01', 'pc')]);

  await ctx.visitor.send(consult('RESTARTED-1', 'after the restart'));
  await ctx.visitor.waitFor(mstat('RESTARTED-1'));
  await ctx.agent.waitFor(bodyId('RESTARTED-1'));
});

t('module_uninstall (config file removed first) stops it and removes it cleanly', async (ctx) => {
  fs.rmSync(path.join(ctx.ejabberd.modulesConfDir, 'mod_consult.yml'));
  const since = ctx.sidecar.lines.length;
  const logBefore = log(ctx).length;
  const r = await ctx.ejabberd.ctl('module_uninstall', 'mod_consult');
  assert.is(r.code, 0, r.stdout + r.stderr);
  await ctx.sidecar.waitForLog('shim stream closed', since);
  await sleep(500);
  assert.not.match(log(ctx).slice(logBefore), /reload aborted/);
  assert.not.match((await ctx.ejabberd.ctl('modules_installed')).stdout, /mod_consult/);
  assert.not.ok(fs.existsSync(path.join(ctx.ejabberd.modulesDir, 'mod_consult')), 'installed copy removed');

  // Plain ejabberd again: the message goes to the shop account untouched, no ack.
  const shop = await connect(ctx, 'shop_2', 'desk');
  try {
    await ctx.visitor.send(consult('PLAIN-1', 'raw'));
    const got = await shop.waitFor((el) => el.getChildText('body') === 'raw');
    assert.is(got.attrs.from.split('/')[0], `visitor1@${D}`);
    assert.not.ok(ctx.visitor.received.some(mstat('PLAIN-1')));
  } finally {
    await shop.stop();
  }
});

t.run();
