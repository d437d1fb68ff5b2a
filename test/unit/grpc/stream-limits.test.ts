// What strangers and runaway shims can make the gRPC port do: refused streams are logged one line per peer per
// interval with a count (not one line each), and a node holds at most grpc.maxStreamsPerNode open streams; one more
// is refused with RESOURCE_EXHAUSTED and a message that says why, and is accepted once another closed.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import { recordingLog } from '../../support/log.js';
import { StanzaFilterClient, type SidecarMessage } from '../../../src/gen/consult/v1/filter.js';
import { ShimAuth } from '../../../src/grpc/auth.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { startGrpcServer, stanzaFilterHandlers, type StreamLimits } from '../../../src/grpc/server.js';
import { silent } from '../../../src/domain/log.js';
import { Backends, deskWorld } from '../../support/desk.js';

const D = 'limits.test';
const TOKEN = 'a-long-enough-shim-token';

async function server(limits: StreamLimits, creds = [{ node: 'ejabberd@one', token: TOKEN }]) {
  const config = parseConfig({ shops: [{ jid: `shop@${D}`, name: 'S', agents: [] }] });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const { log, lines } = recordingLog();
  const handlers = stanzaFilterHandlers({ desk: w.desk, link: new ShimLink(silent), watch: w.watch, log }, {}, new ShimAuth(creds), limits);
  const { server: s, port } = await startGrpcServer(handlers, '127.0.0.1', 0);
  return { port, lines, stop: () => s.forceShutdown() };
}

const md = (token?: string) => {
  const m = new grpc.Metadata();
  if (token) m.set('authorization', `Bearer ${token}`);
  return m;
};

/** A FilterStream on a client: what it got and how it ended. */
function open(client: StanzaFilterClient, token: string | undefined, hello?: string) {
  const call = client.filterStream(md(token));
  const got: SidecarMessage[] = [];
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on('data', (m: SidecarMessage) => got.push(m));
    call.on('error', (e: grpc.ServiceError) => resolve(e));
    call.on('end', () => resolve(undefined));
  });
  if (hello) call.write({ hello: { node: hello, hosts: [D], shimVersion: 't', clusterNodes: [], features: [] } });
  return { call, got, ended };
}

/** How a stream ended, or undefined if it is still open after `ms`. */
const endedWithin = (stream: ReturnType<typeof open>, ms: number) =>
  Promise.race([stream.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);

/** Whether a stream was accepted (told the watch list) rather than refused. */
async function accepted(stream: ReturnType<typeof open>): Promise<boolean> {
  let ended = false;
  void stream.ended.then(() => {
    ended = true;
  });
  for (;;) {
    if (stream.got[0]?.watch) return true;
    if (ended) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

const until = async (what: string, ok: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('5,000 refused streams: a few log lines, one per peer per interval, whose counts add up to 5,000', async () => {
  const INTERVAL = 1000;
  const s = await server({ refusalLogIntervalMs: INTERVAL });
  const client = new StanzaFilterClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
  const started = Date.now();
  try {
    for (let batch = 0; batch < 50; batch++) {
      const ends = await Promise.all(
        Array.from({ length: 100 }, (_, i) => open(client, i % 2 ? 'wrong-token-wrong-token' : undefined).ended),
      );
      assert.ok(
        ends.every((e) => e?.code === grpc.status.UNAUTHENTICATED),
        'each refused',
      );
    }
    const took = Date.now() - started;
    const refused = () => s.lines.filter((l) => l.msg === 'shim stream refused: no valid token');
    const counted = () => refused().reduce((n, l) => n + ((l.fields.refused as number) || 1), 0);
    // The count of the last interval comes when it ends.
    await until('the last interval to be told', () => counted() >= 5000, took + 3 * INTERVAL).catch(() => undefined);
    const lines = refused();
    assert.ok(lines.length <= Math.ceil(took / INTERVAL) + 2, `${lines.length} lines in ${took} ms`);
    assert.is(counted(), 5000, 'every refusal counted once');
    assert.ok(
      lines.every((l) => l.fields.peer === '127.0.0.1'),
      'by peer address',
    );
    assert.is(s.lines.length, lines.length, 'and nothing else');
  } finally {
    client.close();
    s.stop();
  }
});

test('streams per node are capped: one more is refused with RESOURCE_EXHAUSTED until one closes', async () => {
  const s = await server({ maxStreamsPerNode: 2 });
  const clients = Array.from({ length: 4 }, () => new StanzaFilterClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure()));
  try {
    const first = open(clients[0], TOKEN, 'ejabberd@one');
    const second = open(clients[1], TOKEN, 'ejabberd@one');
    await until('both told the watch list', () => !!first.got[0]?.watch && !!second.got[0]?.watch);
    const third = open(clients[2], TOKEN, 'ejabberd@one');
    const err = await endedWithin(third, 5000);
    assert.is(err?.code, grpc.status.RESOURCE_EXHAUSTED, 'the third is refused');
    assert.match(err!.details, /ejabberd node ejabberd@one already has 2 open FilterStreams to this sidecar \(grpc\.maxStreamsPerNode\)/);
    assert.equal(third.got, [], 'nothing sent to it');
    third.call.cancel();
    assert.ok(s.lines.some((l) => /its node already has 2 open streams/.test(l.msg)));
    first.call.end();
    await first.ended;
    // The sidecar notices the close a moment later.
    let fourth = open(clients[3], TOKEN, 'ejabberd@one');
    for (let i = 0; !(await accepted(fourth)); i++) {
      if (i === 50) assert.unreachable('not accepted after one closed');
      await new Promise((r) => setTimeout(r, 50));
      fourth = open(clients[3], TOKEN, 'ejabberd@one');
    }
    second.call.end();
    fourth.call.end();
  } finally {
    for (const c of clients) c.close();
    s.stop();
  }
});

test('without credentials, streams count for the node their hello names', async () => {
  const s = await server({ maxStreamsPerNode: 1 }, []);
  const clients = Array.from({ length: 3 }, () => new StanzaFilterClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure()));
  try {
    const one = open(clients[0], undefined, 'ejabberd@one');
    const two = open(clients[1], undefined, 'ejabberd@two');
    await until('both told the watch list', () => !!one.got[0]?.watch && !!two.got[0]?.watch);
    const again = open(clients[2], undefined, 'ejabberd@one');
    assert.is((await endedWithin(again, 5000))?.code, grpc.status.RESOURCE_EXHAUSTED, 'a second stream of ejabberd@one is refused');
    again.call.cancel();
    one.call.end();
    two.call.end();
  } finally {
    for (const c of clients) c.close();
    s.stop();
  }
});

test.run();
