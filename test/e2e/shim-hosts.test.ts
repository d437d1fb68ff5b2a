// The shim on a node with two virtual hosts: the connection options belong to the node's one
// sidecar connection and must agree (a host_config that disagrees is refused with a clear
// [critical] line, and the connection keeps its settings); timeout and failure_policy may differ
// per host, and a stanza gets those of the host it is addressed to.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { logFence, logText, waitForLogLine } from '../support/ejabberd.js';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import type { Element, TestClient } from '../support/xmpp.js';

const D = 'localhost';
const V = 'visitors.localhost';

interface Ctx {
  stack: Stack;
  baseYml: string;
  visitor?: TestClient;
}
const t = suite<Ctx>('e2e: mod_consult options across virtual hosts');

const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const log = (ctx: Ctx) => logText(ctx.stack.ejabberd);
const waitForLog = (ctx: Ctx, from: number, re: RegExp, timeoutMs?: number) => waitForLogLine(ctx.stack.ejabberd, from, re, timeoutMs);

/**
 * ejabberd.yml plus a host_config for the visitor vhost, which replaces that host's modules list
 * (hence the connection options repeated; mod_ping for the test client's ping).
 */
async function reloadWithHostConfig(ctx: Ctx, consult: Record<string, string | number>): Promise<void> {
  const lines = [
    'host_config:',
    `  ${JSON.stringify(V)}:`,
    '    modules:',
    '      mod_ping: {}',
    '      mod_consult:',
    ...Object.entries(consult).map(([k, v]) => `        ${k}: ${typeof v === 'string' ? JSON.stringify(v) : v}`),
  ];
  fs.writeFileSync(nodeLayout(ctx.stack.ejabberd.dir).configPath, `${ctx.baseYml}\n${lines.join('\n')}\n`);
  const r = await ctx.stack.ejabberd.ctl('reload_config');
  assert.is(r.code, 0, r.stdout + r.stderr);
}

setUpSuite(t, async (ctx) => {
  ctx.stack = await startStack({
    domain: D,
    config: { shops: [{ jid: `shop_2@${D}`, name: 'Day shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] }] },
    visitors: { visitorDomain: V },
    shimOptions: { timeout: 500, failure_policy: 'reject' },
    users: ['visitor1', 'test01'],
  });
  ctx.baseYml = fs.readFileSync(nodeLayout(ctx.stack.ejabberd.dir).configPath, 'utf8');
  assert.not.match(ctx.baseYml, /^host_config:/m);
  for (const user of ['shop_v']) {
    const r = await ctx.stack.ejabberd.ctl('register', user, V, ctx.stack.password);
    assert.is(r.code, 0, r.stdout + r.stderr);
  }
});

t.after(async (ctx) => {
  await ctx.stack?.stop();
});

t('a host_config with another sidecar_port is refused with a [critical] line; the connection keeps its settings', async (ctx) => {
  const from = log(ctx).length;
  const since = ctx.stack.sidecar.lines.length;
  const dead = await freePort();
  await reloadWithHostConfig(ctx, {
    sidecar_host: '127.0.0.1',
    sidecar_port: dead,
    sidecar_token: ctx.stack.credential.token,
    timeout: 500,
    failure_policy: 'reject',
  });
  const line = await waitForLog(
    ctx,
    from,
    /\[critical\].*consult: the virtual hosts disagree on options of the node's one sidecar connection/,
  );
  assert.match(
    line,
    new RegExp(`sidecar_port: (${V} ${dead} here, ${ctx.stack.sidecar.port} on ${D}|${D} ${ctx.stack.sidecar.port} here, ${dead} on ${V})`),
  );
  assert.match(line, /Set sidecar_host, sidecar_port, sidecar_token, .* the same for every host/);

  // Still routed through the sidecar it was connected to.
  const visitor = (ctx.visitor = await ctx.stack.connect('visitor1'));
  await visitor.send(`<message type='consult' to='shop_2@${D}'><body id='HOSTS-1'>hello</body></message>`);
  const ack = await visitor.waitFor((el) => el.attrs.type === 'mstat' && bodyId('HOSTS-1')(el));
  assert.is(ack.getChild('body')!.attrs.stat, 'sent');

  // reload_config has returned, so a reconnection would have been asked for before HOSTS-1 was sent, and
  // logged: after the fence the log has every line about it, and the sidecar has seen HOSTS-1's stream.
  await logFence(ctx.stack.ejabberd);
  assert.not.match(log(ctx).slice(from), /sidecar settings changed, reconnecting/);
  assert.not.match(log(ctx).slice(from), /consult_grpc: connected to sidecar/, 'no new connection from the shim');
  assert.equal(
    ctx.stack.sidecar.lines.slice(since).filter((l) => /shim (hello|stream opened|stream closed)/.test(l)),
    [],
    'no reconnection at the sidecar',
  );
});

t('failure_policy per host: a stanza to the host with pass is delivered unrouted, one to the host with reject bounces', async (ctx) => {
  const from = log(ctx).length;
  await reloadWithHostConfig(ctx, {
    sidecar_host: '127.0.0.1',
    sidecar_port: ctx.stack.sidecar.port,
    sidecar_token: ctx.stack.credential.token,
    timeout: '300 ms',
    failure_policy: 'pass',
  });
  await waitForLog(ctx, from, new RegExp(`\\[info\\].*consult: failure_policy for ${V.replace('.', '\\.')} changed: reject -> pass`));
  await waitForLog(ctx, from, new RegExp(`\\[info\\].*consult: timeout for ${V.replace('.', '\\.')} changed: 500 -> 300`));
  await logFence(ctx.stack.ejabberd); // the reload has returned: a [critical] line about it is in after this
  assert.not.match(log(ctx).slice(from), /\[critical\]/);

  const visitor = ctx.visitor ?? (await ctx.stack.connect('visitor1'));
  const shopV = await ctx.stack.connect('shop_v', 'r', V);
  ctx.stack.sidecar.signal('SIGSTOP'); // no verdicts: every consult stanza gets its host's failure policy
  try {
    await visitor.send(`<message type='consult' to='shop_v@${V}'><body id='PASS-1'>to the pass host</body></message>`);
    // Delivered as ejabberd's record (the body's id attribute is not kept: README "Known limits").
    const got = await shopV.waitFor((el) => el.getChildText('body') === 'to the pass host');
    assert.is(got.attrs.from.split('/')[0], `visitor1@${D}`);
    await visitor.send(`<message type='consult' to='shop_2@${D}'><body id='REJECT-1'>to the reject host</body></message>`);
    const err = await visitor.waitFor((el) => el.attrs.type === 'error' && bodyId('REJECT-1')(el));
    assert.ok(err.getChild('error')!.getChild('service-unavailable'), err.toString());
  } finally {
    ctx.stack.sidecar.signal('SIGCONT');
  }
});

t('at start, a host that disagrees stops ejabberd with the same clear error (as any module that fails to start)', async (ctx) => {
  await ctx.stack.stopClients();
  const dead = await freePort();
  const lines = [
    'host_config:',
    `  ${JSON.stringify(V)}:`,
    '    modules:',
    '      mod_consult:',
    '        sidecar_host: "127.0.0.1"',
    `        sidecar_port: ${dead}`,
  ];
  fs.writeFileSync(nodeLayout(ctx.stack.ejabberd.dir).configPath, `${ctx.baseYml}\n${lines.join('\n')}\n`);
  const from = log(ctx).length;
  const err = await ctx.stack.ejabberd.restart().then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(err, 'ejabberd did not start');
  const line = await waitForLog(ctx, from, /\[critical\].*consult: the virtual hosts disagree/);
  assert.match(line, /mod_consult not started for this host/);
  assert.match(line, /sidecar_token: .*(a token .* none|none .* a token)/);
});

t.run();
