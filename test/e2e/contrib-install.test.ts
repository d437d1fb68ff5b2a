// End to end through the install path of the README: the shim's source goes into a private
// ejabberd's own ext_mod directory (make install-source), `ejabberdctl module_install
// mod_consult` compiles, installs and starts it (nothing on -pa, no beams copied by hand), the
// configuration comes from CONTRIB_MODULES_CONF_DIR/mod_consult.yml, and module_upgrade and
// module_uninstall work on the running node, and the installed module survives a restart.
// Everything lives in the test's temp dir.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { logFence, waitForLogLine } from '../support/ejabberd.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import type { Element, TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const HELPERS = ['mod_consult', 'consult_grpc', 'consult_pb', 'consult_hpack', 'consult_h2'];

interface Ctx {
  stack: Stack;
  relay?: { close(): Promise<void> };
  deadPort: number;
  visitor: TestClient;
  agent: TestClient;
}
const t = suite<Ctx>('e2e: mod_consult installed with ejabberdctl module_install');

setUpSuite(t, async (ctx) => {
  ctx.deadPort = await freePort(); // nothing listens there
  ctx.stack = await startStack({
    domain: D,
    config: {
      systemJid: `admin@${D}`,
      shops: [{ jid: SHOP, name: 'Contrib shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }],
    },
    shimInstall: 'module_install',
    shimOptions: { sidecar_port: ctx.deadPort, timeout: 500, failure_policy: 'reject' },
    linked: false, // pointed at the dead port until the third case
    users: ['visitor1', 'shop_2', 'test01'],
  });
  ctx.visitor = await ctx.stack.connect('visitor1', 'web');
});

t.after(async (ctx) => {
  await ctx.relay?.close();
  await ctx.stack?.stop();
});

const consult = (id: string, text: string) => `<message type='consult' to='${SHOP}'><body msgType='1' id='${id}'>${text}</body></message>`;
const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const mstat = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);
const bounced = (id: string) => (el: Element) => el.attrs.type === 'error' && bodyId(id)(el);
const log = (ctx: Ctx) => fs.readFileSync(ctx.stack.ejabberd.logFile, 'utf8');
/** The first line of the whole log matching `re` (ejabberd's log handler writes a moment after the event). */
const waitForLog = (ctx: Ctx, re: RegExp, timeoutMs = 10_000) => waitForLogLine(ctx.stack.ejabberd, 0, re, timeoutMs);
/** A loopback TCP relay to `port` that counts the connections made through it. */
async function countingRelay(port: number): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    connections++;
    const up = net.connect(port, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {
        down.destroy();
        up.destroy();
      });
      s.on('close', () => {
        sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closed: Promise<void> | undefined;
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

const refusalLines = (ctx: Ctx, from: number) =>
  log(ctx)
    .slice(from)
    .split('\n')
    .filter((l) => /refused this shim/.test(l));

t("module_install compiled the source into the node's ext_mod dir and started it with the CONTRIB_MODULES_CONF_DIR config", async (ctx) => {
  const { ejabberd } = ctx.stack;
  const installed = await ejabberd.ctl('modules_installed');
  assert.match(installed.stdout, /^mod_consult\t/m);
  // ext_mod's compliance check of a contrib module: README.txt, COPYING, the spec's metadata, src/.
  const check = await ejabberd.ctl('module_check', 'mod_consult');
  assert.is(check.code, 0, `module_check: ${check.stdout}${check.stderr}`);
  const lib = path.join(ejabberd.modulesDir, 'mod_consult');
  for (const m of HELPERS) assert.ok(fs.existsSync(path.join(lib, 'ebin', `${m}.beam`)), `${m}.beam installed`);
  assert.ok(fs.existsSync(path.join(lib, 'conf', 'mod_consult.yml')), "the module's default config installed");
  assert.equal(fs.readdirSync(nodeLayout(ejabberd.dir).ebinDir), [], "nothing on -pa: ext_mod's copy is the only one");

  // modules.d/mod_consult.yml replaced conf/mod_consult.yml (port 50051): the shim tries the dead port.
  await waitForLog(ctx, new RegExp(`consult_grpc: sidecar 127\\.0\\.0\\.1:${ctx.deadPort} unavailable`));
  await logFence(ejabberd);
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
  // A warning about DOWN-2 or DOWN-3 would have been logged before its bounce was sent: in the log after the fence.
  await logFence(ejabberd);
  const warnings = log(ctx)
    .split('\n')
    .filter((l) => failure.test(l));
  assert.is(warnings.length, 1, warnings.join('\n'));
});

t('a shim with a wrong token is refused by the sidecar: nothing routed, the failure policy applies, retries back off', async (ctx) => {
  const sidecar = ctx.stack.sidecar;
  const relay = (ctx.relay = await countingRelay(sidecar.port));
  const since = sidecar.lines.length;
  const logFrom = log(ctx).length;
  await ctx.stack.ejabberd.configureShim({
    sidecar_host: '127.0.0.1',
    sidecar_port: relay.port, // to the sidecar, counting the shim's connection attempts
    timeout: 500,
    failure_policy: 'reject',
    sidecar_token: 'not-the-token-the-sidecar-knows',
  });
  await sidecar.waitForLog('shim stream refused', since);
  await waitForLog(ctx, /\[warning\].*consult_grpc: the sidecar at 127\.0\.0\.1:\d+ refused this shim \(grpc-status 16 UNAUTHENTICATED/);

  await ctx.visitor.send(consult('REFUSED-1', 'let me in'));
  const err = await ctx.visitor.waitFor(bounced('REFUSED-1'));
  assert.ok(err.getChild('error')!.getChild('service-unavailable'), err.toString());

  // One warning per attempt, and the attempts back off (100 ms, 200, 400, ... 5 s): no hot loop. Each warning
  // names the wait before the next attempt. One connection per warning (counted while the shim waits out a
  // backoff: an attempt connects before it can be refused and warned about).
  const counted = await waitUntil('four refusal warnings, one connection attempt each', () => {
    const warned = refusalLines(ctx, logFrom);
    const attempts = relay.connections();
    return warned.length >= 4 && attempts === warned.length && { warned, attempts };
  });
  assert.is(counted.attempts, counted.warned.length, 'one connection attempt per warning');
  const delays = counted.warned.map((l) => Number(/retrying in (\d+) ms/.exec(l)?.[1]));
  assert.equal(delays.slice(0, 4), [100, 200, 400, 800], `each attempt waits twice as long: ${delays.join(', ')} ms`);

  // Nothing got through: no hello, and the stanza never reached the sidecar.
  assert.not.ok(
    sidecar.lines.slice(since).some((l) => l.includes('shim hello')),
    'the sidecar never took a hello',
  );
  assert.not.ok(
    sidecar.lines.slice(since).some((l) => l.includes('REFUSED-1')),
    'nor the stanza',
  );
  await relay.close();
});

t('an edited modules.d/mod_consult.yml and reload_config point it at the sidecar: mstat ack, the agent gets the message', async (ctx) => {
  const since = ctx.stack.sidecar.lines.length;
  const logFrom = log(ctx).length;
  const port = ctx.stack.sidecar.port;
  // configureShim adds the node's own token again; the port is the sidecar's own now, not the counting relay's.
  await ctx.stack.ejabberd.configureShim({ sidecar_host: '127.0.0.1', sidecar_port: port, timeout: 500, failure_policy: 'reject' });
  await ctx.stack.sidecar.waitForLog('shim hello', since);
  await waitForLogLine(
    ctx.stack.ejabberd,
    logFrom,
    new RegExp(
      `\\[info\\].*consult: sidecar settings changed, reconnecting to 127\\.0\\.0\\.1:${port} \\(sidecar_port: \\d+ -> ${port}; sidecar_token: replaced\\)`,
    ),
  );
  ctx.agent = await ctx.stack.connect('test01', 'pc');

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
  const src = path.join(ctx.stack.ejabberd.modulesDir, 'sources', 'mod_consult', 'src', 'consult_grpc.erl');
  const code = fs.readFileSync(src, 'utf8');
  const changed = code.replace(/-define\(SHIM_VERSION, <<"([^"]*)">>\)/, '-define(SHIM_VERSION, <<"$1-upgraded">>)');
  assert.ok(changed !== code, 'SHIM_VERSION found');
  fs.writeFileSync(src, changed);

  const since = ctx.stack.sidecar.lines.length;
  const r = await ctx.stack.ejabberd.ctl('module_upgrade', 'mod_consult');
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /has been installed/);
  await ctx.stack.sidecar.waitForLog('-upgraded', since);
  await waitForLog(ctx, /\[info\].*consult: loaded the new code of consult_grpc/);

  await ctx.visitor.send(consult('UPGRADED-1', 'still there?'));
  await ctx.visitor.waitFor(mstat('UPGRADED-1'));
  await ctx.agent.waitFor(bodyId('UPGRADED-1'));
});

t("after an ejabberd restart the module starts again from ext_mod's directory, with the modules.d config", async (ctx) => {
  await ctx.stack.stopClients();
  const since = ctx.stack.sidecar.lines.length;
  await ctx.stack.ejabberd.restart();
  await ctx.stack.sidecar.waitForLog('-upgraded', since); // the installed (upgraded) build, not a fresh one
  [ctx.visitor, ctx.agent] = await Promise.all([ctx.stack.connect('visitor1', 'web'), ctx.stack.connect('test01', 'pc')]);

  await ctx.visitor.send(consult('RESTARTED-1', 'after the restart'));
  await ctx.visitor.waitFor(mstat('RESTARTED-1'));
  await ctx.agent.waitFor(bodyId('RESTARTED-1'));
});

t('module_uninstall (config file removed first) stops it and removes it cleanly', async (ctx) => {
  const { ejabberd } = ctx.stack;
  fs.rmSync(path.join(ejabberd.modulesConfDir, 'mod_consult.yml'));
  const since = ctx.stack.sidecar.lines.length;
  const logBefore = log(ctx).length;
  const r = await ejabberd.ctl('module_uninstall', 'mod_consult');
  assert.is(r.code, 0, r.stdout + r.stderr);
  await ctx.stack.sidecar.waitForLog('shim stream closed', since);
  await logFence(ejabberd); // the uninstall's reload has returned: its lines are all in after this
  assert.not.match(log(ctx).slice(logBefore), /reload aborted/);
  assert.not.match((await ejabberd.ctl('modules_installed')).stdout, /mod_consult/);
  assert.not.ok(fs.existsSync(path.join(ejabberd.modulesDir, 'mod_consult')), 'installed copy removed');

  // Plain ejabberd again: the message goes to the shop account untouched, no ack.
  const shop = await ctx.stack.connect('shop_2', 'desk');
  try {
    await ctx.visitor.send(consult('PLAIN-1', 'raw'));
    const got = await shop.waitFor((el) => el.getChildText('body') === 'raw');
    assert.is(got.attrs.from.split('/')[0], `visitor1@${D}`);
    await ctx.visitor.settle(); // an ack would have been routed to the visitor before the message went on
    assert.not.ok(ctx.visitor.received.some(mstat('PLAIN-1')), 'no mstat ack without mod_consult');
  } finally {
    await shop.stop();
  }
});

t.run();
