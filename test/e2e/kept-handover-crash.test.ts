// SIGKILL of the sidecar while a visitor's kept messages are being handed to the agent who just came
// online: the shim has routed a batch but the sidecar dies before it records the ack, so the restarted
// sidecar sends that batch again. Each kept message carries a key the shim remembers, so the agent gets
// every acknowledged message exactly once (counted by body id).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_1@${D}`;
const KEPT = 100; // two batches of 50 (100 is what one visitor may have waiting)
const isAck = (el: Element) => el.attrs.type === 'mstat' && el.getChild('body')?.attrs.id !== undefined;
const keptId = (el: Element) => {
  const id = el.is('message') ? el.getChild('body')?.attrs.id : undefined;
  return id?.startsWith('K-') ? id : undefined;
};

interface Ctx {
  stack: Stack;
  dataDir: string;
  agent?: TestClient;
}
const handover = suite<Ctx>('SIGKILL during the hand-over of kept messages');

setUpSuite(handover, async (ctx) => {
  ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-kept-'));
  ctx.stack = await startStack({
    domain: D,
    config: {
      store: `pglite:${ctx.dataDir}`,
      limits: { queueMax: 1000 },
      shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `agent1@${D}`, maxSessions: 1 }] }],
    },
    shimOptions: { timeout: 5000, failure_policy: 'reject', breaker_cooldown: 500 },
    users: ['visitor1', 'agent1'],
  });
});

handover.after(async (ctx) => {
  await ctx.agent?.stop();
  await ctx.stack?.stop();
  if (ctx.dataDir) fs.rmSync(ctx.dataDir, { recursive: true, force: true });
});

handover('every acknowledged kept message reaches the agent exactly once', async (ctx) => {
  const { stack } = ctx;
  const visitor = await stack.connect('visitor1');
  // No agent online: every message is kept, and acknowledged to the visitor (mstat).
  const filler = 'x'.repeat(200);
  for (let i = 0; i < KEPT; i++)
    await visitor.send(`<message type='consult' to='${SHOP}'><body id='K-${i}'>kept ${i} ${filler}</body></message>`);
  const err = await visitor.waitFor((el) => el.attrs.type === 'error', 3000).catch(() => undefined);
  assert.not.ok(err, `no bounce: ${err?.toString().slice(-600)}`);
  const acked = new Set<string>();
  while (acked.size < KEPT) acked.add((await visitor.waitFor(isAck, 20_000)).getChild('body')!.attrs.id!);

  // The agent comes online; the sidecar is killed the moment the first kept message reaches the agent:
  // the shim routed the first batch, the sidecar has not recorded (or not even received) the ack.
  const agent = await connectClient({
    service: stack.service,
    domain: D,
    username: 'agent1',
    password: stack.password,
    resource: 'r',
    noPresence: true,
  });
  ctx.agent = agent;
  const sidecar = stack.sidecar;
  let killed: Promise<void> | undefined;
  agent.xmpp.on('stanza', (el: Element) => {
    if (!killed && keptId(el)) killed = sidecar.kill('SIGKILL');
  });
  await agent.send('<presence/>');
  const deadline = Date.now() + 20_000;
  while (!killed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.ok(killed, 'the hand-over started');
  await killed;
  const before = agent.received.filter(keptId).length;
  assert.ok(before < KEPT * 2, 'killed during the hand-over');

  await stack.startSidecarAgain(30_000);
  // The new sidecar resumes the hand-over from the journal; wait for every acknowledged message.
  const seen = () => new Set(agent.received.map(keptId).filter((id): id is string => id !== undefined));
  const until = Date.now() + 30_000;
  while ([...acked].some((id) => !seen().has(id)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  await agent.settle();
  const counts = new Map<string, number>();
  for (const el of agent.received) {
    const id = keptId(el);
    if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const missing = [...acked].filter((id) => !counts.has(id));
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  assert.equal(missing, [], 'every acknowledged message reached the agent');
  assert.equal(twice, [], `no message reached the agent twice (${before} arrived before the kill)`);
  assert.is(counts.size, KEPT);
});

handover.run();
