// gRPC service: stanzas from the shims' streams go to the Desk, verdicts go back once durable;
// notifications update presence; InjectAcks confirm what the sidecar sent on its own.
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import {
  Action,
  type Extra,
  StanzaFilterService,
  type FilterRequest,
  type ShimMessage,
  type SidecarMessage,
  type StanzaFilterServer,
  type Verdict,
} from '../gen/consult/v1/filter.js';
import { ConfigError, type TlsConfig } from '../domain/config.js';
import { readTlsFiles } from '../ops/config-file.js';
import type { Decision } from '../domain/decision.js';
import type { Desk } from '../desk/desk.js';
import { keepsChildrenOf, serialize, type XmlElement } from '../xmpp/xml.js';
import { ackFields } from '../xmpp/stanzas.js';
import { ShimAuth } from './auth.js';
import type { Log } from '../domain/log.js';
import type { ShimLink } from './link.js';
import type { WatchList } from '../cluster/watch-list.js';
import { ThrottledLog } from '../domain/throttle.js';

const ACTIONS = { pass: Action.ACTION_PASS, rewrite: Action.ACTION_REWRITE, drop: Action.ACTION_DROP, reject: Action.ACTION_REJECT };
const xmlBytes = (x: XmlElement) => Buffer.from(serialize(x), 'utf8');
const NO_BYTES = Buffer.alloc(0);

/** What a shim says it reads in its Hello; the structured verdict goes only to those that list it. */
export const STRUCTURED_VERDICT = 'structured-verdict';

/**
 * The verdict on a stanza. `shimXml`: the stanza as the shim forwarded it, when that shim reads structured verdicts:
 * a rewrite that kept the stanza's children is then sent as its attributes only, and acks as their fields, so
 * ejabberd parses neither (it holds the children already and writes the ack itself).
 */
export function toVerdict(seq: string, d: Decision, shimXml?: string): Verdict {
  const structured = shimXml !== undefined;
  const attributes = d.action === 'rewrite' && structured && keepsChildrenOf(shimXml, d.stanza) ? attributesOf(d.stanza) : [];
  return {
    seq,
    action: ACTIONS[d.action],
    stanza: d.action === 'rewrite' && attributes.length === 0 ? Buffer.from(d.xml, 'utf8') : NO_BYTES,
    error: d.action === 'reject' ? d.error : undefined,
    extra: structured ? [] : d.extra.map(xmlBytes),
    attributes,
    extras: structured ? d.extra.map(extraOf) : [],
  };
}

/** An ack as its fields, anything else as XML: Verdict.extras. */
function extraOf(x: XmlElement): Extra {
  const ack = ackFields(x);
  return ack ? { ack } : { xml: xmlBytes(x) };
}

/** name, value, name, value…: Verdict.attributes. */
function attributesOf(x: XmlElement): string[] {
  const out: string[] = [];
  for (const k in x.attrs) out.push(k, x.attrs[k]);
  return out;
}

/** Optional instrumentation: decision outcome and latency, and tracking of in-flight decisions. */
export interface FilterHooks {
  observe?: (action: Decision['action'] | 'failed', seconds: number) => void;
  track?: <T>(work: Promise<T>) => Promise<T>;
}

/** Verdicts a stream may owe at once; past it, new stanzas are refused at once rather than queued. */
export const MAX_OWED_PER_STREAM = 10_000;
const OVERLOADED: Decision = {
  action: 'reject',
  extra: [],
  error: { condition: 'resource-constraint', type: 'wait', text: 'the consult service is overloaded; please send again in a moment' },
};

const refusal = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });

/** Bounds on what shims (or strangers posing as shims) can open, and on the log lines their refusals write. */
export interface StreamLimits {
  /** Open FilterStreams per ejabberd node (the config's grpc.maxStreamsPerNode; default 4). */
  maxStreamsPerNode?: number;
  /** At most one log line per peer address and kind of refusal in this long, with a count (default 60 s). */
  refusalLogIntervalMs?: number;
}

/** The address of a peer as grpc-js gives it (`host:port`, `[v6]:port`), without its port. */
const peerAddress = (peer: string) => peer.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');

/** What the handlers serve: the desk decides, the link carries Injects, the watch list is told at hello. */
export interface FilterParts {
  desk: Desk;
  link: ShimLink;
  watch: WatchList;
  log: Log;
}

export function stanzaFilterHandlers(
  { desk, link, watch, log }: FilterParts,
  hooks: FilterHooks = {},
  auth = new ShimAuth([]),
  limits: StreamLimits = {},
): StanzaFilterServer {
  const unauthenticated = () => refusal(grpc.status.UNAUTHENTICATED, 'a valid shim token is required (authorization: Bearer …)');
  const maxStreams = limits.maxStreamsPerNode ?? 4;
  // Refusals are logged one line per peer address per interval with their count: a stranger opening streams in a
  // loop must not fill the disk.
  const throttled = (msg: string) =>
    new ThrottledLog(
      (peer, refused, intervalMs) => log.warn(msg, { peer, refused, ...(refused > 1 ? { inLastSec: Math.round(intervalMs / 1000) } : {}) }),
      limits.refusalLogIntervalMs ?? 60_000,
    );
  const noToken = throttled('shim stream refused: no valid token');
  const noTokenUnary = throttled('shim call refused: no valid token');
  const tooMany = throttled(`shim stream refused: its node already has ${maxStreams} open streams (grpc.maxStreamsPerNode)`);
  const wrongNode = throttled('shim stream refused: hello claims another node than its token');
  // Open streams per node: counted from authentication (or, without credentials, from hello) until they close.
  const streams = new Map<string, number>();
  const admit = (node: string): (() => void) | undefined => {
    const n = streams.get(node) ?? 0;
    if (n >= maxStreams) return undefined;
    streams.set(node, n + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (streams.get(node) ?? 1) - 1;
      if (left > 0) streams.set(node, left);
      else streams.delete(node);
    };
  };
  const exhausted = (node: string) =>
    refusal(
      grpc.status.RESOURCE_EXHAUSTED,
      `ejabberd node ${node} already has ${maxStreams} open FilterStreams to this sidecar (grpc.maxStreamsPerNode); one must close first`,
    );
  const judge = (req: FilterRequest, deadline: number, structured = false): Promise<Verdict> =>
    hooks.track ? hooks.track(verdictFor(req, deadline, structured)) : verdictFor(req, deadline, structured);
  // A decision that throws must still answer: the shim would otherwise wait for its timeout.
  const verdictFor = async (req: FilterRequest, deadline: number, structured: boolean): Promise<Verdict> => {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const xml = structured ? req.stanza.toString('utf8') : undefined;
      const decision = await desk.filter(xml ?? req.stanza, deadline);
      hooks.observe?.(decision.action, seconds());
      return toVerdict(req.seq, decision, xml);
    } catch (e) {
      hooks.observe?.('failed', seconds());
      log.error('decision failed', { seq: req.seq, err: e });
      return toVerdict(req.seq, {
        action: 'reject',
        extra: [],
        error: { condition: 'internal-server-error', type: 'wait', text: 'the consult service failed to process this message' },
      });
    }
  };
  const deadlineOf = (req: FilterRequest) => Number(req.deadlineMs) || Infinity;
  const onEvent = (event: NonNullable<ShimMessage['event']>, node: string) =>
    desk.events.handleEvent(event, node).catch((e) => log.error('event failed', { jid: event.jid, err: e }));

  return {
    filterStream(call) {
      let node = call.getPeer();
      const peer = peerAddress(node);
      const allowed = auth.nodeOf(call.metadata);
      if (!allowed) {
        noToken.note(peer);
        call.emit('error', unauthenticated()); // before anything is read or sent
        return;
      }
      // A token's node is counted at once; without credentials a stream counts for the node its hello names.
      // Refuses the stream when its node has all its streams open already.
      const admitOrRefuse = (who: string): (() => void) | undefined => {
        const done = admit(who);
        if (!done) {
          tooMany.note(peer);
          call.emit('error', exhausted(who));
        }
        return done;
      };
      let release: (() => void) | undefined;
      if (allowed !== '*') {
        release = admitOrRefuse(allowed);
        if (!release) return;
      }
      let owed = 0;
      let hello = false;
      let structured = false; // the shim's Hello lists STRUCTURED_VERDICT
      log.info('shim stream opened', { peer: node });
      // Events of one node are applied in order (a presence must not overtake the session it belongs to).
      let events = Promise.resolve();
      call.on('data', (msg: ShimMessage) => {
        if (msg.filter) {
          const req = msg.filter;
          if (owed >= MAX_OWED_PER_STREAM) {
            hooks.observe?.('reject', 0);
            call.write({ verdict: toVerdict(req.seq, OVERLOADED) });
            return;
          }
          owed++;
          void judge(req, deadlineOf(req), structured).then((verdict) => {
            owed--;
            // A shim that does not read its verdicts is not read either: its requests wait in HTTP/2 flow control.
            if (!call.write({ verdict } satisfies SidecarMessage) && !call.isPaused()) {
              call.pause();
              call.once('drain', () => call.resume());
            }
          });
        } else if (msg.injectAck) link.ack(call, msg.injectAck.id);
        else if (msg.eraseUserAck) link.erased(call, msg.eraseUserAck);
        else if (msg.cluster && hello) {
          const { node: other, up } = msg.cluster;
          log.info(up ? 'ejabberd node joined the cluster' : 'ejabberd node left the cluster', { node: other, seenBy: node });
          link.nodeState(other, up);
          events = events
            .then(() => desk.events.clusterChanged(other, up))
            .catch((e) => log.error('cluster event failed', { node: other, err: e }));
        } else if (msg.event) {
          const e = msg.event;
          events = events.then(() => onEvent(e, node));
        } else if (msg.hello) {
          if (allowed !== '*' && msg.hello.node !== allowed) {
            wrongNode.note(`${peer} (token of ${allowed}, hello of ${msg.hello.node})`);
            release?.();
            call.emit('error', refusal(grpc.status.PERMISSION_DENIED, `this token speaks for ${allowed}, not ${msg.hello.node}`));
            return;
          }
          if (hello) return; // said once per stream
          if (allowed === '*') {
            release = admitOrRefuse(msg.hello.node || node);
            if (!release) return;
          }
          node = msg.hello.node || node;
          hello = true;
          structured = msg.hello.features.includes(STRUCTURED_VERDICT);
          const cluster = msg.hello.clusterNodes;
          log.info('shim hello', { node, hosts: msg.hello.hosts, version: msg.hello.shimVersion, cluster, features: msg.hello.features });
          // Only a shim that said who it is (and may be so) learns the shops and agents.
          call.write({ watch: watch.current() } satisfies SidecarMessage);
          events = events
            .then(() => desk.events.nodeConnected(node, cluster))
            .catch((e) => log.error('node reset failed', { node, err: e }));
          link.add(call, node, cluster);
        }
      });
      call.on('end', () => call.end());
      call.on('error', (e) => {
        release?.();
        log.warn('shim stream error', { node, err: e });
      });
      call.on('close', () => {
        release?.();
        link.remove(call);
        if (hello) events = events.then(() => desk.events.nodeDisconnected(node));
        log.info('shim stream closed', { node });
      });
    },
    filter(call, callback) {
      if (!auth.nodeOf(call.metadata)) {
        noTokenUnary.note(peerAddress(call.getPeer()));
        return callback(unauthenticated());
      }
      const grpcDeadline = call.getDeadline();
      const deadline = Math.min(
        deadlineOf(call.request),
        grpcDeadline instanceof Date ? grpcDeadline.getTime() : Number(grpcDeadline) || Infinity,
      );
      void judge(call.request, deadline).then((v) => callback(null, v));
    },
    notify(call, callback) {
      const allowed = auth.nodeOf(call.metadata);
      if (!allowed) {
        noTokenUnary.note(peerAddress(call.getPeer()));
        return callback(unauthenticated());
      }
      void onEvent(call.request, allowed === '*' ? call.getPeer() : allowed).then(() => callback(null, {}));
    },
  };
}

/**
 * The gRPC port's credentials: plain h2c without grpc.tls; with it HTTP/2 over TLS (ALPN h2) with the configured
 * certificate, and with clientCa shims must present a certificate it signed. The files are read and checked now.
 */
export function grpcServerCredentials(tls?: TlsConfig): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const files = readTlsFiles(tls);
  try {
    createSecureContext({ cert: files.cert, key: files.key });
  } catch (e) {
    throw new ConfigError(`config: grpc.tls.cert and grpc.tls.key do not load as a PEM certificate and its key: ${(e as Error).message}`);
  }
  if (files.clientCa) {
    try {
      createSecureContext({ ca: files.clientCa });
    } catch (e) {
      throw new ConfigError(`config: grpc.tls.clientCa does not load as PEM CA certificates: ${(e as Error).message}`);
    }
  }
  return grpc.ServerCredentials.createSsl(files.clientCa ?? null, [{ cert_chain: files.cert, private_key: files.key }], !!files.clientCa);
}

export async function startGrpcServer(
  handlers: StanzaFilterServer,
  host: string,
  port: number,
  addServices?: (server: grpc.Server) => void,
  maxStanzaBytes = 262144,
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
): Promise<{ server: grpc.Server; port: number; nagleDisabled: boolean }> {
  // A request is one stanza plus a few fields: refuse anything much larger before it is buffered
  // (grpc-js would take 4 MiB). Still above maxStanzaBytes, so an oversized stanza gets its clear XMPP error.
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxStanzaBytes * 2 + 64 * 1024,
    // A shim that vanished without closing its connection is found by PING within 15 s.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
  });
  server.addService(StanzaFilterService, handlers);
  addServices?.(server); // e.g. grpc.health.v1: services must be added before binding
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port: bound, nagleDisabled: disableNagle(server) };
}

/**
 * grpc-js leaves Nagle's algorithm on for server sockets: a verdict written while the
 * previous one is unacknowledged then waits for the shim's delayed ACK (up to 40 ms).
 * grpc-js has no option for it, so reach its listening http2 servers.
 */
function disableNagle(server: grpc.Server): boolean {
  const listeners = (server as unknown as { http2Servers?: Map<import('node:net').Server, unknown> }).http2Servers;
  if (!(listeners instanceof Map)) return false;
  for (const listener of listeners.keys()) listener.on('connection', (socket: import('node:net').Socket) => socket.setNoDelay(true));
  return true;
}
