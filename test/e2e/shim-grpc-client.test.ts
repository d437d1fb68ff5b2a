// Drives the Erlang gRPC client (erlang-shim/src/consult_grpc.erl) against a
// real grpc-js server. The client runs in its own `erl` process
// (erlang-shim/test/consult_grpc_driver.erl): one Erlang term per command on
// stdin, one "@@ <json>" result line per command on stdout.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/ejabberd-node.js';
import { ErlDriver, waitFor } from '../support/erl-driver.js';
import {
  Action,
  type ClusterEvent,
  type FilterRequest,
  type Hello,
  type SessionEvent,
  SessionEvent_Kind,
  ShimMessage,
  SidecarMessage,
  StanzaFilterService,
  type Verdict,
} from '../../src/gen/consult/v1/filter.js';
import { setUpSuite } from '../support/suite.js';

const shimDir = fileURLToPath(new URL('../../erlang-shim', import.meta.url));
const BIG = 300 * 1024;
const UNARY_ERROR = 'Zugriff verweigert: Ünïcødé ✓ 客服 100%';
const NODE = 'ejd@test';
const WATCH_FILE = path.join(os.tmpdir(), `consult-watch-${process.pid}.term`);

// ---- a scripted StanzaFilter ------------------------------------------------

class ScriptedSidecar {
  server = new grpc.Server();
  hellos: Hello[] = [];
  events: SessionEvent[] = [];
  clusterEvents: ClusterEvent[] = [];
  filters: FilterRequest[] = [];
  injectAcks: string[] = [];
  /** What the shims sent on their FilterStreams, in the order it arrived: hello, event:, cluster:, ack:, filter:. */
  arrivals: string[] = [];
  stream: grpc.ServerDuplexStream<ShimMessage, SidecarMessage> | undefined; // the latest FilterStream
  answer = true; // false: receive requests but never answer
  answerDelayMs = 3; // at most; random below it so that verdicts come back out of order
  holdVerdicts = false; // true: verdicts wait until releaseVerdicts()
  private held: Array<() => void> = [];
  authorizations: string[] = []; // the authorization metadata of every call
  refuseWith: grpc.status | undefined; // refuse every FilterStream with this status
  owed = 0; // verdicts the FilterStreams still have to write
  watch = {
    shops: ['shop1@localhost', 'shop2@localhost'],
    agents: ['agent1@localhost'],
    owned: ['shop1@localhost', 'shop2@localhost'],
    sidecar: 'scripted',
    ownedEpochs: [] as string[],
  };

  verdict(req: FilterRequest): Verdict {
    const base = { seq: req.seq, stanza: Buffer.alloc(0), error: undefined, extra: [req.stanza], attributes: [], extras: [] };
    if (req.stanza.includes('rewrite-big') || req.stanza.length > BIG) {
      const body = 'y'.repeat(BIG);
      return { ...base, action: Action.ACTION_REWRITE, stanza: Buffer.from(`<message id='rw'><body>${body}</body></message>`) };
    }
    return { ...base, action: Action.ACTION_PASS };
  }

  constructor() {
    this.server.addService(StanzaFilterService, {
      filterStream: (call: grpc.ServerDuplexStream<ShimMessage, SidecarMessage>) => {
        this.authorizations.push(String(call.metadata.get('authorization')[0] ?? ''));
        if (this.refuseWith !== undefined) {
          call.emit('error', Object.assign(new Error('refused'), { code: this.refuseWith, details: 'refused by the test' }));
          return;
        }
        this.stream = call;
        call.on('error', () => {});
        call.on('end', () => call.end());
        call.on('data', (msg: ShimMessage) => {
          if (msg.hello) {
            this.hellos.push(msg.hello);
            this.arrivals.push('hello');
            call.write({ watch: this.watch });
          }
          if (msg.event) {
            this.events.push(msg.event);
            this.arrivals.push(`event:${msg.event.jid}`);
          }
          if (msg.cluster) {
            this.clusterEvents.push(msg.cluster);
            this.arrivals.push(`cluster:${msg.cluster.node}`);
          }
          if (msg.injectAck) {
            this.injectAcks.push(msg.injectAck.id);
            this.arrivals.push(`ack:${msg.injectAck.id}`);
          }
          if (msg.filter) {
            const req = msg.filter;
            this.filters.push(req);
            this.arrivals.push(`filter:${req.stanza.toString()}`);
            if (!this.answer) return;
            this.owed++;
            const answer = () => {
              call.write({ verdict: this.verdict(req) });
              this.owed--;
            };
            if (this.holdVerdicts) this.held.push(answer);
            else setTimeout(answer, Math.random() * this.answerDelayMs);
          }
        });
      },
      filter: (call: grpc.ServerUnaryCall<FilterRequest, Verdict>, cb: grpc.sendUnaryData<Verdict>) => {
        this.authorizations.push(String(call.metadata.get('authorization')[0] ?? ''));
        if (call.request.stanza.includes('fail')) {
          cb({ code: grpc.status.PERMISSION_DENIED, details: UNARY_ERROR });
        } else {
          cb(null, this.verdict(call.request));
        }
      },
      notify: (_call: grpc.ServerUnaryCall<SessionEvent, object>, cb: grpc.sendUnaryData<object>) => cb(null, {}),
    });
  }

  async listen(port: number): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  }

  /** Writes the held verdicts; how many they were. */
  releaseVerdicts(): number {
    const held = this.held.splice(0);
    for (const answer of held) answer();
    return held.length;
  }

  kill(): void {
    this.server.forceShutdown();
  }
}

// ---- the Erlang driver: test/support/erl-driver.ts -------------------------------

class Driver extends ErlDriver {}

// ---- helpers ------------------------------------------------------------------

/** Waits for a condition of the test's own (a sidecar's or proxy's record); fails with what was awaited. */
const until = async (what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> => {
  await waitFor(what, cond, { timeoutMs, everyMs: 20 });
};

const erlBin = (s: string) => `<<"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}">>`;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

// ---- tests --------------------------------------------------------------------

const ctx = { driver: undefined as unknown as Driver, port: 0, sidecar: undefined as ScriptedSidecar | undefined };
const t = suite('consult_grpc (Erlang h2c gRPC client)', ctx);

setUpSuite(t, async () => {
  execFileSync('make', ['-s', '-C', shimDir, 'all', 'test-beams'], { stdio: 'inherit' });
  ctx.driver = new Driver();
  ctx.port = await freePort();
});

t.after(() => {
  ctx.sidecar?.kill();
  ctx.driver?.stop();
  fs.rmSync(WATCH_FILE, { force: true });
});

t('golden bytes: Erlang ShimMessage encoding equals ts-proto', async ({ driver }) => {
  const samples: Array<[string, ShimMessage]> = [
    [
      `{filter, #{seq => 300, hook => filter_packet, host => <<"localhost">>, stanza => <<"<message/>">>}}`,
      { filter: { seq: '300', hook: 1, host: 'localhost', stanza: Buffer.from('<message/>'), deadlineMs: '0' } },
    ],
    [
      `{filter, #{seq => 300, hook => filter_packet, host => <<"localhost">>, stanza => <<"<message/>">>, deadline_ms => 1767225600123}}`,
      { filter: { seq: '300', hook: 1, host: 'localhost', stanza: Buffer.from('<message/>'), deadlineMs: '1767225600123' } },
    ],
    [
      `{filter, #{seq => 18446744073709551615, hook => filter_packet, host => <<>>, stanza => <<>>, deadline_ms => 18446744073709551615}}`,
      { filter: { seq: '18446744073709551615', hook: 1, host: '', stanza: Buffer.alloc(0), deadlineMs: '18446744073709551615' } },
    ],
    [`{inject_ack, #{id => 7}}`, { injectAck: { id: '7' } }],
    [`{inject_ack, #{id => 0}}`, { injectAck: { id: '0' } }],
    [`{inject_ack, #{id => 18446744073709551615}}`, { injectAck: { id: '18446744073709551615' } }],
    [
      `{event, #{kind => presence_set, jid => <<"a@localhost/r">>, show => <<"away">>, priority => -129, status => <<"brb">>}}`,
      { event: { kind: SessionEvent_Kind.PRESENCE_SET, jid: 'a@localhost/r', show: 'away', priority: -129, status: 'brb' } },
    ],
    [
      `{event, #{kind => session_close, jid => <<"a@localhost/r">>}}`,
      { event: { kind: SessionEvent_Kind.SESSION_CLOSE, jid: 'a@localhost/r', show: '', priority: 0, status: '' } },
    ],
    [
      `{hello, #{node => <<"n@h">>, hosts => [<<"localhost">>, <<"">>, <<"x.example">>], shim_version => <<"0.1.0">>}}`,
      { hello: { node: 'n@h', hosts: ['localhost', '', 'x.example'], shimVersion: '0.1.0', clusterNodes: [], features: [] } },
    ],
    [
      `{hello, #{node => <<"n@h">>, hosts => [<<"localhost">>], shim_version => <<"0.2.0">>, cluster_nodes => [<<"n@h">>, <<"m@h">>]}}`,
      { hello: { node: 'n@h', hosts: ['localhost'], shimVersion: '0.2.0', clusterNodes: ['n@h', 'm@h'], features: [] } },
    ],
    [`{cluster, #{node => <<"m@h">>, up => true}}`, { cluster: { node: 'm@h', up: true } }],
    [`{cluster, #{node => <<"m@h">>, up => false}}`, { cluster: { node: 'm@h', up: false } }],
  ];
  for (const [term, msg] of samples) {
    assert.is(await driver.run(`{encode_shim, ${term}}`), hex(ShimMessage.encode(msg).finish()), term);
  }
});

t('golden bytes: Erlang decodes ts-proto SidecarMessages', async ({ driver }) => {
  const verdict: SidecarMessage = {
    verdict: {
      seq: '4294967297',
      action: Action.ACTION_REJECT,
      stanza: Buffer.from('<x/>'),
      error: { condition: 'item-not-found', type: 'cancel', text: 'gone ✓' },
      extra: [Buffer.from('<a/>'), Buffer.alloc(0), Buffer.from('<b/>')],
      attributes: [],
      extras: [],
    },
  };
  const got = await driver.run(`{decode_sidecar, <<"${hex(SidecarMessage.encode(verdict).finish())}">>}`);
  assert.equal(got, [
    'verdict',
    {
      seq: 4294967297,
      action: 'reject',
      stanza: '<x/>',
      error: { condition: 'item-not-found', type: 'cancel', text: 'gone ✓' },
      extra: ['<a/>', '', '<b/>'],
    },
  ]);

  const defaults = await driver.run(
    `{decode_sidecar, <<"${hex(SidecarMessage.encode({ verdict: { seq: '0', action: Action.ACTION_PASS, stanza: Buffer.alloc(0), error: undefined, extra: [], attributes: [], extras: [] } }).finish())}">>}`,
  );
  assert.equal(defaults, ['verdict', { seq: 0, action: 'pass', stanza: '', error: null, extra: [] }]);

  // The structured verdict: the held stanza's attributes in order, further stanzas in wire order, an ack as its fields.
  const structured: SidecarMessage = {
    verdict: {
      seq: '5',
      action: Action.ACTION_REWRITE,
      stanza: Buffer.alloc(0),
      error: undefined,
      extra: [Buffer.from('<a/>')],
      attributes: ['to', 'a@x', 'realfrom', 'v@x ✓', 'empty', ''],
      extras: [{ xml: Buffer.from('<m/>') }, { ack: { to: 'v@x/r', bodyId: 'b1', msecTimes: '17' } }],
    },
  };
  assert.equal(await driver.run(`{decode_sidecar, <<"${hex(SidecarMessage.encode(structured).finish())}">>}`), [
    'verdict',
    {
      seq: 5,
      action: 'rewrite',
      stanza: '',
      error: null,
      attributes: [
        ['to', 'a@x'],
        ['realfrom', 'v@x ✓'],
        ['empty', ''],
      ],
      extra: ['<a/>', '<m/>', ['ack', { body_id: 'b1', msec_times: '17', to: 'v@x/r' }]],
    },
  ]);

  const watch = await driver.run(
    `{decode_sidecar, <<"${hex(SidecarMessage.encode({ watch: { shops: ['s@x', 't@x'], agents: ['a@x', 'b@x'], owned: ['t@x'], sidecar: 'sc-1', ownedEpochs: [] } }).finish())}">>}`,
  );
  assert.equal(watch, ['watch', { shops: ['s@x', 't@x'], agents: ['a@x', 'b@x'], owned: ['t@x'], sidecar: 'sc-1' }]);
  const none = await driver.run(
    `{decode_sidecar, <<"${hex(SidecarMessage.encode({ watch: { shops: ['s@x'], agents: [], owned: [], sidecar: '', ownedEpochs: [] } }).finish())}">>}`,
  );
  assert.equal(none, ['watch', { shops: ['s@x'], agents: [], owned: [], sidecar: '' }]);

  const inject = await driver.run(
    `{decode_sidecar, <<"${hex(SidecarMessage.encode({ inject: { stanzas: [Buffer.from('<m1/>'), Buffer.from('<m2/>')], id: '0', keys: [] } }).finish())}">>}`,
  );
  assert.equal(inject, ['inject', { stanzas: ['<m1/>', '<m2/>'], id: 0 }]);
  const acked = await driver.run(
    `{decode_sidecar, <<"${hex(SidecarMessage.encode({ inject: { stanzas: [Buffer.from('<m1/>')], id: '4294967297', keys: [] } }).finish())}">>}`,
  );
  assert.equal(acked, ['inject', { stanzas: ['<m1/>'], id: 4294967297 }]);

  // Unknown fields of every wire type are skipped; an unknown action is surfaced, not crashed on.
  const unknownFields = Buffer.concat([
    Buffer.from([0x08, 0x07, 0x10, 0x09]), // seq 7, action 9
    Buffer.from([0x30, 0x96, 0x01]), // field 6 varint
    Buffer.from([0x39, 1, 2, 3, 4, 5, 6, 7, 8]), // field 7 fixed64
    Buffer.from([0x45, 1, 2, 3, 4]), // field 8 fixed32
    Buffer.from([0x4a, 0x02, 0x41, 0x42]), // field 9 bytes
  ]);
  const wrapped = Buffer.concat([Buffer.from([0x0a, unknownFields.length]), unknownFields, Buffer.from([0x20, 0x01])]); // + field 4 varint
  assert.equal(await driver.run(`{decode_sidecar, <<"${hex(wrapped)}">>}`), [
    'verdict',
    { seq: 7, action: ['unknown_action', 9], stanza: '', error: null, extra: [] },
  ]);
  assert.equal(await driver.run(`{decode_sidecar, <<"">>}`), ['unknown', '']);
});

t('HPACK: RFC 7541 C.4 and C.6 vectors', async ({ driver }) => {
  const v = await driver.run('hpack_vectors');
  assert.equal(v.c4[2], [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ]);
  assert.equal(v.c6[2].at(-1), ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1']);
  assert.equal(v.c6[1][0], [':status', '307']);
  assert.equal(v.int_1337, [1337, '']);
  assert.equal(v.roundtrip, [['a', 'é']]);
  assert.equal(v.bad_index, ['error', ['bad_index', 63]]);
});

t('sidecar absent at start: unavailable at once, process alive', async ({ driver, port }) => {
  assert.is(
    await driver.run(
      `{start, #{host => "127.0.0.1", port => ${port}, hosts => [<<"localhost">>, <<"shop.example">>], node => <<"${NODE}">>, breaker_threshold => 3, breaker_cooldown => 1500, watch_file => "${WATCH_FILE}", on_inject => {consult_grpc_driver, on_inject}}}`,
    ),
    'ok',
  );
  assert.equal(await driver.run(`{filter, <<"localhost">>, <<"<message/>">>, 5000}`), ['error', 'unavailable']);
  assert.equal(await driver.run(`{unary, <<"localhost">>, <<"<message/>">>, 5000}`), ['error', 'unavailable']);
  assert.is(await driver.run(`{notify, #{kind => session_open, jid => <<"dropped@localhost/r">>}}`), 'ok');
  assert.is(await driver.run('alive'), true);
  assert.is((await driver.run('status')).connected, false);
});

t('sidecar started later: reconnects, Hello carries node and hosts', async (c) => {
  c.sidecar = new ScriptedSidecar();
  await c.sidecar.listen(c.port);
  await c.driver.waitStatus('connected', true);
  await until('hello', () => c.sidecar!.hellos.length === 1);
  // The driver's node is not distributed: the cluster is the node itself.
  assert.equal(c.sidecar.hellos[0], {
    node: NODE,
    hosts: ['localhost', 'shop.example'],
    shimVersion: '0.2.0',
    clusterNodes: [NODE],
    features: ['structured-verdict'],
  });
  const v = await c.driver.run(`{filter, <<"localhost">>, <<"<message id='1'/>">>, 5000}`);
  assert.equal(v, ['ok', { seq: v[1].seq, action: 'pass', stanza: '', error: null, extra: ["<message id='1'/>"] }]);
  assert.ok(v[1].seq > 0);
  // A kept event would have gone out on the stream before this request: the stream carried the Hello, then it.
  assert.is(c.sidecar.events.length, 0, 'events sent while disconnected are dropped');
  assert.equal(c.sidecar.arrivals, ['hello', "filter:<message id='1'/>"], 'events sent while disconnected are dropped');
});

t('watch list pushed after Hello is visible through watched/2', async ({ driver }) => {
  assert.is(await driver.run(`{wait_watched, shop, <<"shop2@localhost">>, 5000}`), true);
  assert.is(await driver.run(`{watched, shop, <<"shop1@localhost">>}`), true);
  assert.is(await driver.run(`{watched, agent, <<"agent1@localhost">>}`), true);
  assert.is(await driver.run(`{watched, shop, <<"agent1@localhost">>}`), false);
  assert.is(await driver.run(`{watched, agent, <<"nobody@localhost">>}`), false);
});

t('1000 concurrent calls from 50 processes are correlated', async ({ driver }) => {
  const r = await driver.run('{burst, 50, 20, 10000}', 60000);
  assert.equal(r, { ok: 1000, distinct_seqs: 1000, failures: [] });
});

t('300 KB stanzas both ways (flow control, frame splitting)', async ({ driver }) => {
  const r = await driver.run(`{filter_big, <<"localhost">>, ${BIG}, 10000}`);
  assert.is(r[0], 'ok');
  assert.is(r[1].action, 'rewrite');
  assert.ok(r[1].stanza > BIG, `rewritten stanza size ${r[1].stanza}`);
  assert.is(r[1].stanza_head, `<message id='rw'><body>${'y'.repeat(BIG)}`.slice(0, 40));
  assert.is(r[1].echo_equal, true);
  assert.ok(r[1].extra[0] > BIG);
});

t('SessionEvents arrive with all fields', async ({ driver, sidecar }) => {
  await driver.run(
    `{notify, #{kind => presence_set, jid => <<"agent1@localhost/web">>, show => <<"dnd">>, priority => -42, status => <<"busy ✓"/utf8>>}}`,
  );
  await driver.run(`{notify, #{kind => session_close, jid => <<"agent1@localhost/web">>}}`);
  await until('events', () => sidecar!.events.length === 2);
  assert.equal(sidecar!.events, [
    { kind: SessionEvent_Kind.PRESENCE_SET, jid: 'agent1@localhost/web', show: 'dnd', priority: -42, status: 'busy ✓' },
    { kind: SessionEvent_Kind.SESSION_CLOSE, jid: 'agent1@localhost/web', show: '', priority: 0, status: '' },
  ]);
});

t('FilterRequest.deadline_ms is the wall-clock time of the call plus its timeout', async ({ driver, sidecar }) => {
  const before = Date.now();
  const r = await driver.run(`{filter_timed, <<"localhost">>, <<"<message id='deadline'/>">>, 700}`);
  const after = Date.now();
  assert.is(r.result[0], 'ok');
  const req = sidecar!.filters.find((f) => f.stanza.toString() === "<message id='deadline'/>");
  assert.ok(req, 'request seen by the server');
  const deadline = Number(req!.deadlineMs);
  // Erlang's clock around the call: system_time(millisecond) + timeout, taken inside.
  assert.ok(deadline >= r.t0 + 700 && deadline <= r.t1 + 700, `deadline ${deadline}, call ${r.t0}..${r.t1}`);
  // The same wall clock as the sidecar's (same machine; 50 ms for rounding and scheduling).
  assert.ok(deadline >= before + 700 - 50 && deadline <= after + 700 + 50, `deadline ${deadline}, node ${before}..${after}`);
});

t('Inject with an id: InjectAck after on_inject returned; none for id 0 or a crashed callback', async ({ driver, sidecar }) => {
  const s = sidecar!;
  const inject = (id: string, ...stanzas: string[]) =>
    s.stream!.write({ inject: { stanzas: stanzas.map((x) => Buffer.from(x)), id, keys: [] } });
  const injects = () => driver.run('injects') as Promise<{ started: string[][]; done: string[][] }>;
  const startedWith = async (stanza: string) => (await injects()).started.some((l) => l.includes(stanza));
  const doneWith = async (stanza: string) => (await injects()).done.some((l) => l.includes(stanza));
  const waitInject = (stage: 'started' | 'done', stanza: string) =>
    driver.waitTrue(`on_inject ${stage} with ${stanza}`, `{wait_inject, ${stage}, ${erlBin(stanza)}, 20000}`);
  /** A request on the stream, answered: what the client wrote on the stream before it arrived before it. */
  const marker = async (id: string) => {
    const xml = `<message id='${id}'/>`;
    assert.is((await driver.run(`{filter, <<"localhost">>, ${erlBin(xml)}, 5000}`))[0], 'ok');
    return s.arrivals.indexOf(`filter:${xml}`);
  };
  const acksBefore = (i: number) => s.arrivals.slice(0, i).filter((a) => a.startsWith('ack:'));

  // The callback is held until released: no ack may come before it returns.
  inject('7', "<message id='hold-7' to='a@localhost'/>", "<message id='m7' to='b@localhost'/>");
  await waitInject('started', "<message id='hold-7' to='a@localhost'/>");
  assert.equal(acksBefore(await marker('while-7-held')), [], 'no ack while on_inject runs');
  assert.equal(s.injectAcks, [], 'no ack while on_inject runs');
  assert.is(await driver.run('release_injects'), 1);
  await until('InjectAck 7', () => s.injectAcks.length > 0);
  assert.equal(s.injectAcks, ['7']);
  assert.ok(await doneWith("<message id='m7' to='b@localhost'/>"), 'on_inject returned with both stanzas');

  inject('0', "<message id='zero'/>");
  inject('8', "<message id='crash-8'/>");
  inject('9', "<message id='m9'/>");
  await until('InjectAck 9', () => s.injectAcks.includes('9'));
  await waitInject('done', "<message id='zero'/>");
  // Once the three callbacks' processes have ended (returned or crashed), every ack they cast is queued at
  // the connection ahead of the next request, so it is on the stream before that request.
  await driver.waitTrue('every on_inject process ended', '{wait_injects_ended, 20000}');
  assert.ok(await startedWith("<message id='crash-8'/>"), 'the crashing callback ran');
  assert.not.ok(await doneWith("<message id='crash-8'/>"));
  assert.equal(acksBefore(await marker('after-injects')), ['ack:7', 'ack:9'], 'no ack for id 0 or the crashed callback');
  assert.equal(s.injectAcks, ['7', '9']);
  assert.is(await driver.run('alive'), true);
  assert.is((await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`))[0], 'ok');
});

t('unary Filter: verdict, and a non-ASCII grpc-message error (trailers-only)', async ({ driver }) => {
  const ok = await driver.run(`{unary, <<"localhost">>, <<"<message id='u'/>">>, 5000}`);
  assert.equal(ok, ['ok', { seq: 0, action: 'pass', stanza: '', error: null, extra: ["<message id='u'/>"] }]);
  for (let i = 0; i < 3; i++) {
    // Repeated so the server's HPACK encoder reuses its dynamic table.
    const err = await driver.run(`{unary, <<"localhost">>, <<"<message id='fail'/>">>, 5000}`);
    assert.equal(err, ['error', ['grpc', String(grpc.status.PERMISSION_DENIED), UNARY_ERROR]]);
  }
  // The bidi stream still works after the unary calls.
  assert.is((await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`))[0], 'ok');
});

t('server killed mid-stream: pending calls fail unavailable, then recovery', async (c) => {
  c.sidecar!.answer = false;
  assert.is(await c.driver.run(`{filter_async, 20, <<"localhost">>, 20000}`), 'ok');
  await until('requests at the server', () => c.sidecar!.filters.filter((f) => f.stanza.includes('async')).length === 20);
  c.sidecar!.kill();
  const results = await c.driver.run('collect_async');
  assert.equal(results, Array(20).fill(['error', 'unavailable']));
  assert.is(await c.driver.run('alive'), true);
  assert.equal(await c.driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`), ['error', 'unavailable']);

  c.sidecar = new ScriptedSidecar();
  await c.sidecar.listen(c.port);
  await c.driver.waitStatus('connected', true);
  await until('second hello', () => c.sidecar!.hellos.length === 1);
  assert.is((await c.driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`))[0], 'ok');
  assert.is((await c.driver.run('status')).pending, 0);
});

t('an InjectAck due on a stream that ended is dropped, not sent on the new one', async (c) => {
  const held = "<message id='hold-10'/>";
  c.sidecar!.stream!.write({ inject: { stanzas: [Buffer.from(held)], id: '10', keys: [] } });
  await c.driver.waitTrue('on_inject of id 10', `{wait_inject, started, ${erlBin(held)}, 20000}`);
  c.sidecar!.kill();
  await c.driver.waitStatus('connected', false);
  c.sidecar = new ScriptedSidecar();
  await c.sidecar.listen(c.port);
  await c.driver.waitStatus('connected', true);
  await until('hello on the new stream', () => c.sidecar!.hellos.length === 1);

  // The new main stream has the same HTTP/2 stream id (1) as the old one: it is the only stream opened yet.
  assert.is((await c.driver.run('status')).next_stream_id, 3, 'the new main stream is stream 1');
  assert.is(await c.driver.run('release_injects'), 1);
  await c.driver.waitTrue('on_inject of id 10 to return', `{wait_inject, done, ${erlBin(held)}, 20000}`);
  // Its process has ended: an ack it cast is queued at the connection ahead of the next Inject, and of its ack.
  await c.driver.waitTrue('the process of on_inject 10 to end', '{wait_injects_ended, 20000}');
  c.sidecar.stream!.write({ inject: { stanzas: [Buffer.from("<message id='m11'/>")], id: '11', keys: [] } });
  await until('InjectAck 11', () => c.sidecar!.injectAcks.length > 0);
  assert.equal(c.sidecar.injectAcks, ['11'], 'the ack due on the old stream was dropped');
});

t('never-answering server: timeouts open the breaker, cooldown closes it', async ({ driver, sidecar }) => {
  sidecar!.answer = false;
  for (let i = 0; i < 3; i++) {
    assert.equal(await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 150}`), ['error', 'timeout']);
  }
  assert.equal(await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 150}`), ['error', 'circuit_open']);
  assert.is((await driver.run('status')).breaker, 'open');

  sidecar!.answer = true;
  await driver.waitStatus('breaker', 'half_open');
  assert.is((await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`))[0], 'ok');
  const status = await driver.run('status');
  assert.is(status.breaker, 'closed');
  assert.is(status.connected, true);
  assert.is(status.consecutive_timeouts, 0);
});

t('the last watch list survives a restart of the client (ejabberd restart before the sidecar answers)', async ({ driver }) => {
  assert.is(await driver.run('stop'), 'ok');
  const nobody = await freePort();
  assert.is(
    await driver.run(
      `{start, #{host => "127.0.0.1", port => ${nobody}, hosts => [<<"localhost">>], node => <<"${NODE}">>, watch_file => "${WATCH_FILE}"}}`,
    ),
    'ok',
  );
  assert.is((await driver.run('status')).connected, false);
  assert.is(await driver.run(`{watched, shop, <<"shop1@localhost">>}`), true);
  assert.is(await driver.run(`{watched, agent, <<"agent1@localhost">>}`), true);
  assert.is(await driver.run(`{watched, shop, <<"nobody@localhost">>}`), false);
});

t.run();

// ---- the link: tokens, PING through a proxy that goes silent, GOAWAY while verdicts are owed ----

/** Reads the HTTP/2 frames of one direction of a connection as they pass, after `skip` bytes (the client's preface). */
class FrameReader {
  private buf = Buffer.alloc(0);

  constructor(
    private skip: number,
    private onFrame: (type: number, flags: number, payload: Buffer) => void,
  ) {}

  push(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    const skipped = Math.min(this.skip, this.buf.length);
    this.buf = this.buf.subarray(skipped);
    this.skip -= skipped;
    while (this.buf.length >= 9 && this.buf.length >= 9 + this.buf.readUIntBE(0, 3)) {
      const len = this.buf.readUIntBE(0, 3);
      this.onFrame(this.buf[3], this.buf[4], this.buf.subarray(9, 9 + len));
      this.buf = this.buf.subarray(9 + len);
    }
  }
}

const PING = 0x6;
const ACK = 0x1;

/** One client connection through the proxy and what passed on it, in order. */
interface ProxyPair {
  forward: boolean;
  /** `ping <opaque>` (the client's PING), `ack <opaque>` (the sidecar's PING ACK, passed on), `silence`, `closed` (by the client). */
  log: string[];
}

/**
 * A TCP proxy that can go silent: its connections stay open but nothing is forwarded any more
 * (no FIN, no RST: a half-open link, as after a cable pull or a frozen NAT entry). Connections
 * made while silent stay silent; resume() only makes new ones forward again. It reads the PING
 * frames going by.
 */
class SilentProxy {
  forwarding = true;
  connections = 0;
  readonly pairs: ProxyPair[] = [];
  private sockets = new Set<net.Socket>();
  private server: net.Server;

  constructor(private target: number) {
    this.server = net.createServer((client) => {
      this.connections++;
      const pair: ProxyPair = { forward: this.forwarding, log: [] };
      this.pairs.push(pair);
      this.sockets.add(client);
      const upstream = pair.forward ? net.connect(this.target, '127.0.0.1') : undefined;
      if (upstream) this.sockets.add(upstream);
      const fromClient = new FrameReader(24, (type, flags, payload) => {
        if (type === PING && !(flags & ACK)) pair.log.push(`ping ${payload.toString('hex')}`);
      });
      const fromServer = new FrameReader(0, (type, flags, payload) => {
        if (type === PING && flags & ACK) pair.log.push(`ack ${payload.toString('hex')}`);
      });
      client.on('data', (d) => {
        fromClient.push(d);
        if (pair.forward) upstream!.write(d);
      });
      upstream?.on('data', (d) => {
        if (!pair.forward) return;
        fromServer.push(d);
        client.write(d);
      });
      // The client may hang up; the server's side of a silent pair reaches nobody.
      const clientGone = () => {
        client.destroy();
        upstream?.destroy();
      };
      client.on('error', clientGone);
      client.on('close', () => {
        if (!pair.log.includes('closed')) pair.log.push('closed');
        clientGone();
      });
      upstream?.on('error', () => {
        if (pair.forward) clientGone();
      });
      upstream?.on('close', () => {
        if (pair.forward) clientGone();
      });
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port)));
  }

  silence(): void {
    this.forwarding = false;
    for (const p of this.pairs) {
      p.forward = false;
      p.log.push('silence');
    }
  }

  resume(): void {
    this.forwarding = true;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

const startTerm = (port: number, extra = '') =>
  `{start, #{host => "127.0.0.1", port => ${port}, hosts => [<<"localhost">>], node => <<"${NODE}">>${extra}}}`;

/** Binds again to a port the previous server is still giving up. */
async function listenRetrying(sidecar: ScriptedSidecar, port: number): Promise<void> {
  await waitFor(
    `port ${port} free for the new sidecar`,
    () =>
      sidecar.listen(port).then(
        () => true,
        () => false,
      ),
    { everyMs: 20 },
  );
}

const link = suite('consult_grpc: the link (tokens, keepalive, GOAWAY)');
const cleanup: Array<() => void> = [];
link.after.each(() => {
  for (const f of cleanup.splice(0)) f();
});

link('the token goes in the authorization metadata of every call; a refused shim backs off, then gets in', async () => {
  const port = await freePort();
  const sidecar = new ScriptedSidecar();
  await sidecar.listen(port);
  const driver = new Driver();
  cleanup.push(
    () => driver.stop(),
    () => sidecar.kill(),
  );
  const token = 'the-token-of-this-node-0123456789';
  assert.is(await driver.run(startTerm(port, `, token => <<"${token}">>`)), 'ok');
  await until('hello', () => sidecar.hellos.length === 1);
  assert.is((await driver.run(`{unary, <<"localhost">>, <<"<message id='u'/>">>, 5000}`))[0], 'ok');
  assert.equal(sidecar.authorizations, [`Bearer ${token}`, `Bearer ${token}`]);

  // The sidecar ends the stream and refuses the next ones (UNAUTHENTICATED, as src/grpc/auth.ts does).
  sidecar.refuseWith = grpc.status.UNAUTHENTICATED;
  const logged = driver.stderr.length;
  sidecar.stream!.end();
  // Each refusal is logged with the wait before the next attempt: the backoff series, not a hot loop.
  const retries = () =>
    [
      ...driver.stderr
        .slice(logged)
        .matchAll(/refused this shim \(grpc-status 16 UNAUTHENTICATED: refused by the test\).*?retrying in (\d+) ms/g),
    ].map((m) => Number(m[1]));
  await waitFor('three refusals logged', () => retries().length >= 3, { detail: () => driver.stderr.slice(logged) });
  assert.equal(await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 2000}`), ['error', 'unavailable']);
  // The stream it ended was lost after a first 100 ms (backoff_min); each refusal doubles it.
  assert.equal(retries().slice(0, 3), [200, 400, 800], 'the waits between attempts double');
  assert.is(sidecar.hellos.length, 1, 'no hello got through');

  sidecar.refuseWith = undefined;
  await until('hello after the refusals', () => sidecar.hellos.length === 2);
  // One refused FilterStream per refusal logged, then the one that got in; all with the token.
  await until('a logged refusal for every refused stream', () => sidecar.authorizations.length === 2 + retries().length + 1);
  assert.equal(retries(), [200, 400, 800, 1600, 3200, 5000, 5000, 5000].slice(0, retries().length), 'doubling up to backoff_max');
  assert.equal(sidecar.authorizations, Array(2 + retries().length + 1).fill(`Bearer ${token}`));
  assert.is((await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`))[0], 'ok');
});

link(
  'a link that silently stops forwarding is closed at its first unanswered PING, its callers fail at once, and it is recovered',
  async () => {
    const sidecar = new ScriptedSidecar();
    const port = await sidecar.listen(await freePort());
    const proxy = new SilentProxy(port);
    const proxyPort = await proxy.listen();
    const driver = new Driver();
    cleanup.push(
      () => driver.stop(),
      () => proxy.close(),
      () => sidecar.kill(),
    );
    assert.is(await driver.run(startTerm(proxyPort, ', keepalive_interval => 1000, keepalive_timeout => 1000')), 'ok');
    await driver.waitStatus('connected', true);
    assert.is((await driver.run(`{filter, <<"localhost">>, <<"<m/>">>, 5000}`))[0], 'ok');
    // PINGs go and their ACKs come back: nothing happens. A request after two of them is served on the same connection.
    const first = proxy.pairs[0];
    await until('two PINGs answered', () => first.log.filter((e) => e.startsWith('ack ')).length >= 2);
    assert.is((await driver.run(`{filter, <<"localhost">>, <<"<message id='after-pings'/>">>, 5000}`))[0], 'ok');
    assert.is((await driver.run('status')).connected, true);
    assert.is(proxy.connections, 1);
    assert.is(sidecar.hellos.length, 1, 'the same FilterStream');

    proxy.silence();
    const logged = driver.stderr.length;
    // Stanzas sent now wait for the link, not for their own (long) timeout.
    assert.is(await driver.run(`{filter_async, 3, <<"localhost">>, 8000}`), 'ok');
    await until('the client to close the silent connection', () => first.log.includes('closed'));
    await driver.waitLog('the PING timeout logged', /lost \(keepalive_timeout\); 3 requests on it failed/, logged);
    // On that connection: every PING answered until the silence, then one that was not, then the client closed it.
    const events = first.log.filter((e) => e !== 'silence');
    const pings = events.filter((e) => e.startsWith('ping '));
    assert.equal(
      events,
      [...pings.flatMap((p, i) => (i < pings.length - 1 ? [p, p.replace('ping', 'ack')] : [p])), 'closed'],
      JSON.stringify(first.log),
    );
    // unavailable, not timeout: they failed with the link, not at their 8 s timeout.
    assert.equal(await driver.run('collect_async'), Array(3).fill(['error', 'unavailable']));

    // It keeps trying (the proxy takes the connection, silently); once the proxy forwards again, it is back.
    proxy.resume();
    await until('a new FilterStream through the proxy', () => sidecar.hellos.length === 2);
    const verdict = await driver.run(`{filter, <<"localhost">>, <<"<message id='back'/>">>, 5000}`);
    assert.is(verdict[0], 'ok', `not recovered: ${JSON.stringify(verdict)}`);
    assert.is(sidecar.hellos.length, 2, 'a new FilterStream');
    assert.ok(proxy.connections >= 2);
  },
);

link(
  'GOAWAY from a restarting sidecar (tryShutdown while verdicts are owed): every in-flight verdict arrives, new stanzas go to the new one',
  async () => {
    const port = await freePort();
    const old = new ScriptedSidecar();
    old.holdVerdicts = true;
    await old.listen(port);
    const driver = new Driver();
    cleanup.push(
      () => driver.stop(),
      () => old.kill(),
    );
    assert.is(await driver.run(startTerm(port)), 'ok');
    await until('hello', () => old.hellos.length === 1);

    assert.is(await driver.run(`{filter_async, 50, <<"localhost">>, 5000}`), 'ok');
    await until('requests at the old sidecar', () => old.filters.length === 50);
    assert.is(old.owed, 50, 'verdicts still owed when the sidecar goes');

    // The old one goes away gracefully (GOAWAY); the client keeps that connection for what it owes.
    const logged = driver.stderr.length;
    const stopped = new Promise<void>((resolve) => old.server.tryShutdown(() => resolve()));
    await driver.waitLog('the GOAWAY seen', /is going away \(GOAWAY no_error\)/, logged);
    await driver.waitStatus('draining', 1);
    // The new one takes the port; new stanzas go there while the old one still owes all 50.
    const fresh = new ScriptedSidecar();
    cleanup.push(() => fresh.kill());
    await listenRetrying(fresh, port);
    await until('hello at the new sidecar', () => fresh.hellos.length === 1);
    const after = await driver.run(`{filter, <<"localhost">>, <<"<message id='after'/>">>, 5000}`);
    assert.is(after[0], 'ok');
    assert.ok(
      fresh.filters.some((f) => f.stanza.toString() === "<message id='after'/>"),
      'the new stanza went to the new sidecar',
    );
    assert.not.ok(old.filters.some((f) => f.stanza.toString() === "<message id='after'/>"));
    assert.is(old.owed, 50);
    const waiting = await driver.run('status');
    assert.equal([waiting.draining, waiting.pending], [1, 50], 'the 50 callers wait on the old connection');

    // Like the real sidecar, the old one answers what it owes, then ends its streams.
    assert.is(old.releaseVerdicts(), 50);
    old.stream!.end();
    const results = await driver.run('collect_async');
    assert.equal(
      results.map((r: unknown[]) => r[0]),
      Array(50).fill('ok'),
      JSON.stringify(results.filter((r: unknown[]) => r[0] !== 'ok')),
    );
    await stopped;
    await driver.waitStatus('draining', 0);
    const status = await driver.run('status');
    assert.is(status.draining, 0);
    assert.is(status.connected, true);
    assert.is(status.pending, 0);
    assert.not.match(driver.stderr.slice(logged), /requests on it failed/);
  },
);

link.run();

// ---- two sidecars: each shop goes to the one that owns it -------------------------------

const S1 = 'shop1@localhost';
const S2 = 'shop2@localhost';

/** A's and B's watch lists: the same shops and agents, each owning what `owned` says. */
const watchOf = (sidecar: string, owned: string[]) => ({
  shops: [S1, S2],
  agents: ['agent1@localhost'],
  owned,
  ownedEpochs: [] as string[],
  sidecar,
});

const owners = suite('consult_grpc: two sidecars, one owner per shop');
const ownersCleanup: Array<() => void> = [];
owners.after.each(() => {
  for (const f of ownersCleanup.splice(0)) f();
});

owners(
  'a shop goes to its owner only, follows its ownership, has no owner while its owner is gone; events and ClusterEvents go to both',
  async () => {
    const [a, b] = [new ScriptedSidecar(), new ScriptedSidecar()];
    a.watch = watchOf('A', [S1]);
    b.watch = watchOf('B', [S2]);
    const [portA, portB] = [await a.listen(await freePort()), await b.listen(await freePort())];
    const driver = new Driver();
    ownersCleanup.push(
      () => driver.stop(),
      () => a.kill(),
      () => b.kill(),
    );
    // As mod_consult starts them for `sidecars: ["127.0.0.1:<A>", "127.0.0.1:<B>"]`.
    assert.is(await driver.run('{connections, [consult_grpc, consult_grpc_2]}'), 'ok');
    assert.is(await driver.run(startTerm(portA, ', name => consult_grpc')), 'ok');
    assert.is(await driver.run(startTerm(portB, ', name => consult_grpc_2')), 'ok');
    await until('both hellos', () => a.hellos.length === 1 && b.hellos.length === 1);
    for (const s of [a, b]) assert.equal(s.hellos[0].clusterNodes, [NODE]);
    await driver.waitStatus('owned', 1, { name: 'consult_grpc' });
    await driver.waitStatus('owned', 1, { name: 'consult_grpc_2' });

    let n = 0;
    /** Sends a stanza for `target` (a shop, or any); says which sidecar got it, or the error. */
    const send = async (target: string) => {
      const id = `own-${++n}`;
      const xml = `<message id='${id}' to='${target === 'any' ? 'x@localhost' : target}'/>`;
      const term = target === 'any' ? 'any' : `<<"${target}">>`;
      const r = await driver.run(`{filter_to, <<"localhost">>, ${term}, <<"${xml}">>, 5000}`);
      const at = [a, b].filter((s) => s.filters.some((f) => f.stanza.toString() === xml));
      if (r[0] !== 'ok') {
        assert.is(at.length, 0, `${id} failed (${JSON.stringify(r)}) but reached a sidecar`);
        return r[1] as string;
      }
      assert.is(at.length, 1, `${id} reached ${at.length} sidecars`);
      return at[0] === a ? 'A' : 'B';
    };

    assert.is(await send(S1), 'A');
    assert.is(await send(S2), 'B');
    assert.is(await send('any'), 'A', 'the first connected sidecar in the configured order');

    // Session events and cluster membership changes go to both.
    assert.is(await driver.run(`{notify, #{kind => session_open, jid => <<"agent1@localhost/r">>}}`), 'ok');
    assert.is(await driver.run(`{cluster_event, 'n2@host', false}`), 'ok');
    assert.is(await driver.run(`{cluster_event, 'n2@host', true}`), 'ok');
    await until('events and ClusterEvents at both', () => [a, b].every((s) => s.events.length === 1 && s.clusterEvents.length === 2));
    for (const s of [a, b]) {
      assert.is(s.events[0].jid, 'agent1@localhost/r');
      assert.equal(s.clusterEvents, [
        { node: 'n2@host', up: false },
        { node: 'n2@host', up: true },
      ]);
    }

    // s1 moves to B: B's list names it, then A's no longer does.
    b.stream!.write({ watch: watchOf('B', [S1, S2]) });
    a.stream!.write({ watch: watchOf('A', []) });
    await driver.waitStatus('owned', 0, { name: 'consult_grpc' });
    await driver.waitStatus('owned', 2, { name: 'consult_grpc_2' });
    assert.is(await send(S1), 'B');
    assert.is(await send(S2), 'B');

    // Back to A, then A goes away: s1 has no owner (the caller applies its failure policy) until B claims it.
    b.stream!.write({ watch: watchOf('B', [S2]) });
    a.stream!.write({ watch: watchOf('A', [S1]) });
    await driver.waitStatus('owned', 1, { name: 'consult_grpc' });
    await driver.waitStatus('owned', 1, { name: 'consult_grpc_2' });
    assert.is(await send(S1), 'A');
    a.kill();
    await driver.waitStatus('connected', false, { name: 'consult_grpc' });
    assert.is(await send(S1), 'no_owner');
    assert.is(await send(S2), 'B');
    assert.is(await send('any'), 'B');
    b.stream!.write({ watch: watchOf('B', [S1, S2]) });
    await driver.waitStatus('owned', 2, { name: 'consult_grpc_2' });
    assert.is(await send(S1), 'B');
    const status: Array<{ name: string; connected: boolean; owned: number; sidecar_id: string }> = await driver.run('status');
    assert.equal(
      status.map((s) => [s.name, s.connected, s.owned, s.sidecar_id]),
      [
        ['consult_grpc', false, 0, 'A'],
        ['consult_grpc_2', true, 2, 'B'],
      ],
    );
  },
);

owners.run();
