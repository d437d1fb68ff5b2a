// Restart safety: the sidecar is SIGKILLed mid-conversation and started again on the
// same embedded database; sessions, the queue and kept messages are all still there.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Stack, startStack } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import type { Element } from '../support/xmpp.js';

const D = 'localhost';
const bodyId = (id: string) => (el: Element) => el.getChild('body')?.attrs.id === id;
const isAck = (id: string) => (el: Element) => el.attrs.type === 'mstat' && bodyId(id)(el);

interface Ctx {
  stack: Stack;
  dataDir: string;
}
const restart = suite<Ctx>('e2e restart safety');

setUpSuite(restart, async (ctx) => {
  ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-pglite-'));
  ctx.stack = await startStack({
    domain: D,
    config: {
      store: `pglite:${ctx.dataDir}`,
      shops: [
        { jid: `shop_2@${D}`, name: 'Day shop', agents: [{ jid: `test01@${D}`, maxSessions: 5 }] },
        { jid: `shop_3@${D}`, name: 'Night shop', noAgentText: 'Nobody is on duty.', agents: [{ jid: `test03@${D}`, maxSessions: 1 }] },
      ],
    },
    shimOptions: { timeout: 2000, failure_policy: 'reject', breaker_cooldown: 500 },
    users: ['visitor1', 'visitor2', 'test01', 'test03'],
  });
});

restart.after(async (ctx) => {
  await ctx.stack?.stop();
  if (ctx.dataDir) fs.rmSync(ctx.dataDir, { recursive: true, force: true });
});

restart('SIGKILL mid-conversation: session, queue and kept messages survive', async (ctx) => {
  const { stack } = ctx;
  const [visitor1, visitor2, agent1] = await Promise.all([stack.connect('visitor1'), stack.connect('visitor2'), stack.connect('test01')]);

  await visitor1.send(`<message type='consult' to='shop_2@${D}'><body id='R-1'>before</body></message>`);
  await agent1.waitFor(bodyId('R-1'));
  await visitor1.waitFor((el) => el.attrs.auto_reply === 'true');
  await visitor2.send(`<message type='consult' to='shop_3@${D}'><body id='W-1'>kept one</body></message>`);
  await visitor2.waitFor(isAck('W-1'));
  await visitor2.send(`<message type='consult' to='shop_3@${D}'><body id='W-2'>kept two</body></message>`);
  await visitor2.waitFor(isAck('W-2'));

  await stack.sidecar.kill('SIGKILL');
  await stack.startSidecarAgain(30_000);

  // The session is still there: same agent, no second welcome (it would have been routed to the visitor
  // before R-2 went to the agent, so it is in by the settle).
  await visitor1.send(`<message type='consult' to='shop_2@${D}'><body id='R-2'>after</body></message>`);
  await visitor1.waitFor(isAck('R-2'));
  const after = await agent1.waitFor(bodyId('R-2'));
  assert.is(after.attrs.realfrom, `visitor1@${D}`);
  await visitor1.settle();
  assert.is(visitor1.received.filter((el) => el.attrs.auto_reply === 'true').length, 1);

  // The queue and its kept messages are still there: the agent who logs in gets both, in order.
  const agent3 = await stack.connect('test03');
  const one = await agent3.waitFor(bodyId('W-1'));
  const two = await agent3.waitFor(bodyId('W-2'));
  assert.equal([one.getChildText('body'), two.getChildText('body')], ['kept one', 'kept two']);
  assert.ok(agent3.received.indexOf(one) < agent3.received.indexOf(two));
});

restart.run();
