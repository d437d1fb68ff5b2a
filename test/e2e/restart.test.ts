// Restart safety: the sidecar is SIGKILLed mid-conversation and started again on the
// same embedded database; sessions, the queue and kept messages are all still there.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { newShimCredential, startEjabberd, type Ejabberd } from '../support/ejabberd.js';
import { startSidecar, writeConfig, type SidecarProcess } from '../support/sidecar.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = 'localhost';
const PASSWORD = 'secret';
const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const isAck = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);

interface Ctx {
  ejabberd: Ejabberd;
  sidecar: SidecarProcess;
  configFile: string;
  dataDir: string;
  clients: TestClient[];
}
const restart = suite<Ctx>('e2e restart safety');

restart.before(async (ctx) => {
  execFileSync('make', ['-C', path.join(repoRoot, 'erlang-shim')], { stdio: 'ignore' });
  ctx.clients = [];
  ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-pglite-'));
  const credential = newShimCredential();
  ctx.configFile = writeConfig({
    grpc: { shims: [credential] },
    store: `pglite:${ctx.dataDir}`,
    shops: [
      { jid: `shop_2@${D}`, name: 'Day shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] },
      { jid: `shop_3@${D}`, name: 'Night shop', noAgentText: 'Nobody is on duty.', agents: [{ jid: `test03@${D}`, maxSessions: 1 }] },
    ],
  });
  ctx.sidecar = startSidecar(ctx.configFile, await freePort());
  await ctx.sidecar.waitForLog('sidecar listening', 0, 30_000);
  ctx.ejabberd = await startEjabberd({
    domain: D,
    credential,
    shimOptions: {
      sidecar_host: '127.0.0.1',
      sidecar_port: ctx.sidecar.port,
      timeout: 2000,
      failure_policy: 'reject',
      breaker_cooldown: 500,
    },
  });
  await ctx.sidecar.waitForLog('shim hello');
  await Promise.all(['visitor1', 'visitor2', 'test01', 'test03'].map((u) => ctx.ejabberd.register(u, PASSWORD)));
});

restart.after(async (ctx) => {
  await Promise.all(ctx.clients.map((c) => c.stop().catch(() => undefined)));
  await ctx.ejabberd?.stop();
  await ctx.sidecar?.kill();
  fs.rmSync(ctx.dataDir, { recursive: true, force: true });
});

restart('SIGKILL mid-conversation: session, queue and kept messages survive', async (ctx) => {
  const connect = async (username: string) => {
    const c = await connectClient({
      service: `xmpp://127.0.0.1:${ctx.ejabberd.c2sPort}`,
      domain: D,
      username,
      password: PASSWORD,
      resource: 'r',
    });
    ctx.clients.push(c);
    return c;
  };
  const [visitor1, visitor2, agent1] = await Promise.all([connect('visitor1'), connect('visitor2'), connect('test01')]);

  await visitor1.send(`<message type='consult' to='shop_2@${D}'><body id='R-1'>before</body></message>`);
  await agent1.waitFor(bodyId('R-1'));
  await visitor1.waitFor((el) => el.attrs.auto_reply === 'true');
  await visitor2.send(`<message type='consult' to='shop_3@${D}'><body id='W-1'>kept one</body></message>`);
  await visitor2.waitFor(isAck('W-1'));
  await visitor2.send(`<message type='consult' to='shop_3@${D}'><body id='W-2'>kept two</body></message>`);
  await visitor2.waitFor(isAck('W-2'));

  await ctx.sidecar.kill('SIGKILL');
  ctx.sidecar = startSidecar(ctx.configFile, ctx.sidecar.port);
  await ctx.sidecar.waitForLog('shim hello', 0, 30_000);

  // The session is still there: same agent, no second welcome.
  await visitor1.send(`<message type='consult' to='shop_2@${D}'><body id='R-2'>after</body></message>`);
  await visitor1.waitFor(isAck('R-2'));
  const after = await agent1.waitFor(bodyId('R-2'));
  assert.is(after.attrs.realfrom, `visitor1@${D}`);
  assert.is(visitor1.received.filter((el) => el.attrs.auto_reply === 'true').length, 1);

  // The queue and its kept messages are still there: the agent who logs in gets both, in order.
  const agent3 = await connect('test03');
  const one = await agent3.waitFor(bodyId('W-1'));
  const two = await agent3.waitFor(bodyId('W-2'));
  assert.equal([one.getChildText('body'), two.getChildText('body')], ['kept one', 'kept two']);
  assert.ok(agent3.received.indexOf(one) < agent3.received.indexOf(two));
});

restart.run();
