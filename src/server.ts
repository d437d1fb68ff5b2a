// gRPC service: turns router decisions into Verdicts, over the shim's stream or unary calls.
import * as grpc from '@grpc/grpc-js';
import {
  Action, SessionEvent, ShimMessage, SidecarMessage, StanzaFilterService, Verdict,
  type FilterRequest, type StanzaFilterServer,
} from './gen/consult/v1/filter.js';
import type { ConsultRouter, Decision } from './router.js';
import { serialize } from './xml.js';

const ACTIONS = { pass: Action.ACTION_PASS, rewrite: Action.ACTION_REWRITE, drop: Action.ACTION_DROP, reject: Action.ACTION_REJECT };
const xmlBytes = (s: string) => Buffer.from(s, 'utf8');

export function toVerdict(seq: string, d: Decision): Verdict {
  return {
    seq,
    action: ACTIONS[d.action],
    stanza: d.action === 'rewrite' ? xmlBytes(serialize(d.stanza)) : Buffer.alloc(0),
    error: d.action === 'reject' ? d.error : undefined,
    extra: d.extra.map((x) => xmlBytes(serialize(x))),
  };
}

export type Log = (msg: string, fields?: Record<string, unknown>) => void;

export function stanzaFilterHandlers(router: ConsultRouter, onEvent: (e: SessionEvent) => void, log: Log): StanzaFilterServer {
  // A decision that throws must still answer: the shim would otherwise wait for its timeout.
  const judge = async (req: FilterRequest): Promise<Verdict> => {
    try {
      return toVerdict(req.seq, await router.decide(req.stanza));
    } catch (e) {
      log('decision failed', { seq: req.seq, err: String(e) });
      return toVerdict(req.seq, {
        action: 'reject', extra: [],
        error: { condition: 'internal-server-error', type: 'wait', text: 'the consult service failed to process this message' },
      });
    }
  };
  return {
    filterStream(call) {
      log('shim stream opened', { peer: call.getPeer() });
      call.write({ watch: router.watchList() } satisfies SidecarMessage);
      call.on('data', (msg: ShimMessage) => {
        if (msg.filter) void judge(msg.filter).then((verdict) => call.write({ verdict } satisfies SidecarMessage));
        else if (msg.event) onEvent(msg.event);
        else if (msg.hello) log('shim hello', { node: msg.hello.node, hosts: msg.hello.hosts, version: msg.hello.shimVersion });
      });
      call.on('end', () => call.end());
      call.on('error', (e) => log('shim stream error', { err: String(e) }));
      call.on('close', () => log('shim stream closed', { peer: call.getPeer() }));
    },
    filter(call, callback) {
      void judge(call.request).then((v) => callback(null, v));
    },
    notify(call, callback) {
      onEvent(call.request);
      callback(null, {});
    },
  };
}

export async function startGrpcServer(handlers: StanzaFilterServer, host: string, port: number): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(StanzaFilterService, handlers);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { server, port: bound };
}
