// gRPC service: turns router decisions into Verdicts over the shims' streams, and
// carries the router's own stanzas (timers, queue, admin) back to ejabberd.
import * as grpc from '@grpc/grpc-js';
import {
  Action, SidecarMessage, StanzaFilterService, Verdict,
  type FilterRequest, type ShimMessage, type StanzaFilterServer,
} from './gen/consult/v1/filter.js';
import type { ConsultRouter, Decision } from './router.js';
import { serialize, type XmlElement } from './xml.js';

const ACTIONS = { pass: Action.ACTION_PASS, rewrite: Action.ACTION_REWRITE, drop: Action.ACTION_DROP, reject: Action.ACTION_REJECT };
const xmlBytes = (x: XmlElement) => Buffer.from(serialize(x), 'utf8');

export function toVerdict(seq: string, d: Decision): Verdict {
  return {
    seq,
    action: ACTIONS[d.action],
    stanza: d.action === 'rewrite' ? xmlBytes(d.stanza) : Buffer.alloc(0),
    error: d.action === 'reject' ? d.error : undefined,
    extra: d.extra.map(xmlBytes),
  };
}

export type Log = (msg: string, fields?: Record<string, unknown>) => void;
type ShimStream = grpc.ServerDuplexStream<ShimMessage, SidecarMessage>;

/** The open shim streams; stanzas the router sends on its own go out on one of them. */
export class ShimLink {
  private readonly streams = new Set<ShimStream>();
  private backlog: Buffer[] = [];
  static readonly MAX_BACKLOG = 10_000;

  constructor(private readonly log: Log) {}

  get connected(): number {
    return this.streams.size;
  }

  add(stream: ShimStream): void {
    this.streams.add(stream);
    if (this.backlog.length) {
      stream.write({ inject: { stanzas: this.backlog } });
      this.backlog = [];
    }
  }

  remove(stream: ShimStream): void {
    this.streams.delete(stream);
  }

  /** Any node will do: ejabberd routes a stanza to its recipient across the cluster. */
  send(stanzas: XmlElement[]): void {
    if (stanzas.length === 0) return;
    const bytes = stanzas.map(xmlBytes);
    const [stream] = this.streams;
    if (stream) {
      stream.write({ inject: { stanzas: bytes } });
      return;
    }
    // No shim connected: keep them for the next one, bounded.
    this.backlog.push(...bytes);
    if (this.backlog.length > ShimLink.MAX_BACKLOG) {
      this.log('no shim connected: dropping oldest pending stanzas', { dropped: this.backlog.length - ShimLink.MAX_BACKLOG });
      this.backlog = this.backlog.slice(-ShimLink.MAX_BACKLOG);
    }
  }

  pushWatchList(watch: { shops: string[]; agents: string[] }): void {
    for (const s of this.streams) s.write({ watch });
  }

  /** Shutdown: end every shim stream (the shims reconnect to another sidecar or retry). */
  endAll(): void {
    for (const s of this.streams) s.end();
    this.streams.clear();
  }
}

/** Optional instrumentation: decision outcome and latency, and tracking of in-flight decisions. */
export interface FilterHooks {
  observe?: (action: Decision['action'] | 'failed', seconds: number) => void;
  track?: <T>(work: Promise<T>) => Promise<T>;
}

export function stanzaFilterHandlers(router: ConsultRouter, link: ShimLink, log: Log, hooks: FilterHooks = {}): StanzaFilterServer {
  const judge = (req: FilterRequest): Promise<Verdict> => (hooks.track ? hooks.track(decide(req)) : decide(req));
  // A decision that throws must still answer: the shim would otherwise wait for its timeout.
  const decide = async (req: FilterRequest): Promise<Verdict> => {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const decision = await router.decide(req.stanza);
      hooks.observe?.(decision.action, seconds());
      return toVerdict(req.seq, decision);
    } catch (e) {
      hooks.observe?.('failed', seconds());
      log('decision failed', { seq: req.seq, err: String(e) });
      return toVerdict(req.seq, {
        action: 'reject', extra: [],
        error: { condition: 'internal-server-error', type: 'wait', text: 'the consult service failed to process this message' },
      });
    }
  };
  const onEvent = (event: NonNullable<ShimMessage['event']>, node: string) =>
    router.handleEvent(event, node).catch((e) => log('event failed', { jid: event.jid, err: String(e) }));

  return {
    filterStream(call) {
      let node = call.getPeer();
      log('shim stream opened', { peer: node });
      call.write({ watch: router.watchList() } satisfies SidecarMessage);
      // Events of one node are applied in order (a presence must not overtake the session it belongs to).
      let events = Promise.resolve();
      call.on('data', (msg: ShimMessage) => {
        if (msg.filter) void judge(msg.filter).then((verdict) => call.write({ verdict } satisfies SidecarMessage));
        else if (msg.event) { const e = msg.event; events = events.then(() => onEvent(e, node)); }
        else if (msg.hello) {
          node = msg.hello.node || node;
          log('shim hello', { node, hosts: msg.hello.hosts, version: msg.hello.shimVersion });
          events = events.then(() => router.nodeConnected(node)).catch((e) => log('node reset failed', { node, err: String(e) }));
          link.add(call);
        }
      });
      call.on('end', () => call.end());
      call.on('error', (e) => log('shim stream error', { err: String(e) }));
      call.on('close', () => {
        link.remove(call);
        log('shim stream closed', { node });
      });
    },
    filter(call, callback) {
      void judge(call.request).then((v) => callback(null, v));
    },
    notify(call, callback) {
      void onEvent(call.request, call.getPeer()).then(() => callback(null, {}));
    },
  };
}

export async function startGrpcServer(
  handlers: StanzaFilterServer, host: string, port: number, addServices?: (server: grpc.Server) => void,
): Promise<{ server: grpc.Server; port: number; nagleDisabled: boolean }> {
  const server = new grpc.Server();
  server.addService(StanzaFilterService, handlers);
  addServices?.(server); // e.g. grpc.health.v1: services must be added before binding
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
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
