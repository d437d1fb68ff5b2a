// The gRPC link as a stranger on the machine would try it: without a token nothing is read or
// sent; a token speaks only for its own node; a client that never reads its verdicts cannot
// make the sidecar decide (and buffer) without bound.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import {
  Action,
  Hook,
  StanzaFilterClient,
  type ShimMessage,
  type SidecarMessage,
  type StanzaFilterServer,
} from '../../../src/gen/consult/v1/filter.js';
import { ShimAuth } from '../../../src/grpc/auth.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { startGrpcServer, stanzaFilterHandlers } from '../../../src/grpc/server.js';
import { Backends, deskWorld } from '../../support/desk.js';
import { silent } from '../../../src/domain/log.js';
import { parseElement } from '../../../src/xmpp/xml.js';

const D = 'auth.test';
const SHOP = `shop@${D}`;
const TOKEN = 'a-long-enough-shim-token';

type ServerStream = Parameters<StanzaFilterServer['filterStream']>[0];

async function server() {
  // ann takes every chat (always-on, room for all 50 visitors): every stanza a stream sends is relayed to her.
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [{ jid: `ann@${D}`, maxSessions: 50, status: 'always-on' }] }] });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  let decided = 0;
  const handlers = stanzaFilterHandlers(
    { desk: w.desk, link: new ShimLink(silent), watch: w.watch, log: silent },
    {
      observe: () => {
        decided++;
      },
    },
    new ShimAuth([{ node: 'ejabberd@one', token: TOKEN }]),
  );
  // The sidecar's side of each stream it reads: how many stanzas it took, and whether it stopped reading.
  const streams: { call: ServerStream; read: number }[] = [];
  const filterStream = (call: ServerStream) => {
    handlers.filterStream(call);
    if (call.listenerCount('data') === 0) return; // refused: never read
    const seen = { call, read: 0 };
    streams.push(seen);
    call.on('data', (m: ShimMessage) => {
      if (m.filter) seen.read++;
    });
  };
  const { server: s, port } = await startGrpcServer({ ...handlers, filterStream }, '127.0.0.1', 0);
  return { port, decided: () => decided, streams, stop: () => s.forceShutdown() };
}

/** Polls `ok` until it holds; fails after `ms` (a bound for a broken build, not a measurement). */
const until = async (what: string, ok: () => boolean, ms = 60_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const withToken = (token?: string) => {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
};
const stanza = (i: number) =>
  Buffer.from(`<message type='consult' from='v${i % 50}@${D}/w' to='${SHOP}'><body id='b${i}'>hi</body></message>`);

/** Opens a FilterStream; resolves with what it received and how it ended. */
function openStream(port: number, md: grpc.Metadata, hello?: string) {
  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.filterStream(md);
  const got: SidecarMessage[] = [];
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on('data', (m: SidecarMessage) => got.push(m));
    call.on('error', (e: grpc.ServiceError) => resolve(e));
    call.on('end', () => resolve(undefined));
  });
  if (hello) call.write({ hello: { node: hello, hosts: [D], shimVersion: 't', clusterNodes: [], features: [] } });
  return { client, call, got, ended };
}

test('no token, or a wrong one: refused with UNAUTHENTICATED, nothing sent (no watch list), nothing decided', async () => {
  const s = await server();
  try {
    for (const md of [withToken(), withToken('guess-guess-guess-guess')]) {
      const { client, call, got, ended } = openStream(s.port, md, 'ejabberd@one');
      call.write({ filter: { seq: '1', hook: Hook.HOOK_FILTER_PACKET, host: D, stanza: stanza(1), deadlineMs: '0' } });
      const err = await ended;
      assert.is(err?.code, grpc.status.UNAUTHENTICATED);
      assert.equal(got, []);
      client.close();
    }
    const client = new StanzaFilterClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    const unary = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.filter({ seq: '1', hook: 1, host: D, stanza: stanza(2), deadlineMs: '0' }, (e) => resolve(e)),
    );
    assert.is(unary?.code, grpc.status.UNAUTHENTICATED);
    const notify = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.notify({ kind: 3, jid: `ann@${D}/pc`, show: '', priority: 0, status: '' }, (e) => resolve(e)),
    );
    assert.is(notify?.code, grpc.status.UNAUTHENTICATED, 'a forged presence is refused');
    client.close();
    assert.is(s.decided(), 0);
  } finally {
    s.stop();
  }
});

test('a token speaks only for its node: a hello claiming another node is refused with PERMISSION_DENIED', async () => {
  const s = await server();
  try {
    const { client, got, ended } = openStream(s.port, withToken(TOKEN), 'ejabberd@two');
    assert.is((await ended)?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(got, [], 'not even the watch list');
    client.close();
    const good = openStream(s.port, withToken(TOKEN), 'ejabberd@one');
    good.call.write({ filter: { seq: '7', hook: Hook.HOOK_FILTER_PACKET, host: D, stanza: stanza(3), deadlineMs: '0' } });
    await until('the verdict', () => good.got.some((m) => m.verdict));
    assert.ok(good.got[0].watch, 'the watch list first');
    assert.is(good.got.find((m) => m.verdict)!.verdict!.seq, '7');
    good.call.end();
    good.client.close();
  } finally {
    s.stop();
  }
});

test('a client that never reads its verdicts is not read either: the sidecar decides a bounded number and waits', async () => {
  const s = await server();
  const N = 30_000;
  try {
    const { client, call, got } = openStream(s.port, withToken(TOKEN), 'ejabberd@one');
    call.pause(); // never reads a verdict
    // Everything is handed to the client's own buffers at once; only the sidecar's reading paces it.
    for (let i = 0; i < N; i++)
      call.write({ filter: { seq: String(i), hook: Hook.HOOK_FILTER_PACKET, host: D, stanza: stanza(i), deadlineMs: '0' } });
    // The sidecar stops reading the stream once its verdicts back up, after deciding everything it read.
    await until('the sidecar to stop reading', () => {
      const [seen] = s.streams;
      return !!seen && seen.call.isPaused() && seen.read > 0 && s.decided() === seen.read;
    });
    const decided = s.decided();
    assert.ok(decided > 0 && decided < N / 2, `decided ${decided} of ${N} sent, then stopped reading`);
    call.resume(); // reading again: the rest follows
    await until('every verdict', () => got.filter((m) => m.verdict).length >= N);
    const verdicts = got.flatMap((m) => (m.verdict ? [m.verdict] : []));
    assert.is(verdicts.length, N, 'one verdict per stanza');
    assert.equal(
      verdicts.map((v) => Number(v.seq)).sort((x, y) => x - y),
      Array.from({ length: N }, (_, i) => i),
      'each stanza got its own verdict',
    );
    const notRelayed = verdicts.filter(
      (v) => v.action !== Action.ACTION_REWRITE || parseElement(Buffer.from(v.stanza).toString()).attrs.to !== `ann@${D}`,
    );
    assert.equal(notRelayed, [], 'every one relayed to ann: none refused, none dropped');
    assert.not.ok(
      verdicts.some((v) => v.error?.condition === 'resource-constraint'),
      'none was refused as overload',
    );
    assert.is(s.decided(), N, 'nothing was dropped, only held back');
    call.cancel();
    client.close();
  } finally {
    s.stop();
  }
});

test.run();
