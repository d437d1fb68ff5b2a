// PostgreSQL down: a single real sidecar on it cannot renew its shops' leases, and past the lease period it stops
// deciding them (another sidecar may have taken them). What a visitor is told must be true: that the consult service
// cannot reach its database (service-unavailable, wait), not that "another consult sidecar" decides the shop.
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { Action, StanzaFilterClient } from '../../src/gen/consult/v1/filter.js';
import { grpcCalls, relayedTo } from '../support/grpc-calls.js';
import { startPostgres, type Postgres } from '../support/postgres.js';
import { type SidecarChild, spawnSidecar } from '../support/sidecar-process.js';
import { writeConfig } from '../support/sidecar.js';

const D = 'unreachable.test';
const SHOP = `shop_1@${D}`;
const { filter, online } = grpcCalls({ domain: D, shop: SHOP, deadlineMs: 5000 });

const down = suite<{ pg?: Postgres; sidecar?: SidecarChild }>('the database out of reach');
down.after(async (ctx) => {
  await ctx.sidecar?.kill('SIGKILL');
  await ctx.pg?.stop();
});

down('PostgreSQL down past the lease period: visitors are told the service cannot reach its database', async (ctx) => {
  ctx.pg = await startPostgres();
  const config = writeConfig({
    store: ctx.pg.url,
    sidecarId: 'alone',
    shops: [{ jid: SHOP, name: 'Shop', agents: [{ jid: `ann@${D}`, maxSessions: 10 }] }],
  });
  const port = await freePort();
  const sidecar = spawnSidecar(config, port);
  ctx.sidecar = sidecar;
  await sidecar.waitForLog('deciding shops', 60_000);
  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    await online(client);
    assert.is(relayedTo(await filter(client, 1, 'a1')), `ann@${D}`, 'decided while the database answers');

    await ctx.pg.stop(); // gone: every connection refused
    ctx.pg = undefined;
    await sidecar.waitForLog('leases not renewed in time', 20_000);
    const refused = await filter(client, 2, 'a2');
    assert.is(refused.action, Action.ACTION_REJECT);
    assert.equal([refused.error?.condition, refused.error?.type], ['service-unavailable', 'wait']);
    assert.match(refused.error!.text, 'the consult service cannot reach its database');
    assert.not.match(refused.error!.text, 'another consult sidecar');
    const again = await filter(client, 1, 'a3'); // a visitor with a session: the same
    assert.match(again.error?.text ?? '', 'cannot reach its database');
  } finally {
    client.close();
  }
});

down.run();
