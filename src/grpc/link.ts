// The open shim streams, and delivery of the stanzas the sidecar sends on its own (timers,
// queue, admin actions, released kept messages). Each Inject carries an id the shim
// acknowledges once ejabberd's router has them; an Inject whose stream closes, or that is
// not acknowledged in time, is sent again on another stream (at least once: body ids let
// clients spot a rare duplicate). Released kept messages carry a key per stanza, which the
// shim remembers, so their resends (from this sidecar or the next) reach the agent once. With no shim connected, Injects wait, bounded.
// Any node of an ejabberd cluster routes to users on the others, so an Inject may go to any
// stream; streams of a node the cluster reported down are used only when nothing else is
// left, and a retry goes to another node than the one that failed when there is one.
import type * as grpc from '@grpc/grpc-js';
import type { EraseUserAck, ShimMessage, SidecarMessage, WatchList } from '../gen/consult/v1/filter.js';
import type { ErasedInEjabberd } from '../desk/ports.js';
import type { Log } from '../domain/log.js';
import { serialize, type XmlElement } from '../xmpp/xml.js';

export type ShimStream = grpc.ServerDuplexStream<ShimMessage, SidecarMessage>;

export class Undelivered extends Error {}

interface Inject {
  id: string;
  stanzas: Buffer[];
  keys: Buffer[]; // kept messages: one per stanza, the same in every resend and from every sidecar

  tries: number;
  stream?: ShimStream;
  timer?: NodeJS.Timeout;
  resolve(): void;
  reject(e: Error): void;
}

/** An EraseUser waiting for its ack. */
interface Erase {
  id: string;
  jid: string;
  account: boolean;
  tries: number;
  stream?: ShimStream;
  timer?: NodeJS.Timeout;
  resolve(r: ErasedInEjabberd): void;
  reject(e: Error): void;
}

export interface LinkOptions {
  ackTimeoutMs?: number;
  maxTries?: number;
  /** Stanzas kept while no shim is connected. */
  maxWaiting?: number;
}

export class ShimLink {
  private readonly streams = new Map<ShimStream, string>(); // open streams (in order) → their node
  private readonly downNodes = new Set<string>(); // reported gone by another node of the cluster
  private readonly clusterNodes = new Set<string>(); // every node a shim's hello or a cluster event named
  private next = 0; // round-robin over streams
  private lastId = 0;
  private readonly inFlight = new Map<string, Inject>();
  private waiting: Inject[] = [];
  private waitingStanzas = 0;
  private readonly erasing = new Map<string, Erase>();
  private readonly ackTimeoutMs: number;
  private readonly maxTries: number;
  private readonly maxWaiting: number;

  constructor(
    private readonly log: Log,
    opts: LinkOptions = {},
  ) {
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 10_000;
    this.maxTries = opts.maxTries ?? 3;
    this.maxWaiting = opts.maxWaiting ?? 10_000;
  }

  get connected(): number {
    return this.streams.size;
  }

  get pending(): number {
    return this.inFlight.size + this.waiting.length;
  }

  /** A stream said hello: its node, and the cluster as that node sees it. */
  add(stream: ShimStream, node = '', cluster: readonly string[] = []): void {
    if (this.streams.has(stream)) return;
    this.streams.set(stream, node);
    this.downNodes.delete(node); // it said hello: it is up
    for (const n of [node, ...cluster]) if (n) this.clusterNodes.add(n);
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingStanzas = 0;
    for (const inj of waiting) this.write(inj);
  }

  /** A stream closed: what it had not acknowledged goes out on another. */
  remove(stream: ShimStream): void {
    this.streams.delete(stream);
    for (const inj of [...this.inFlight.values()]) if (inj.stream === stream) this.retry(inj);
    for (const e of [...this.erasing.values()]) if (e.stream === stream) this.eraseAgain(e);
  }

  /**
   * Asks one shim (any node: offline messages, MAM and accounts are the cluster's) to erase a user through
   * ejabberd's own modules; resolves with what it removed. Idempotent, so a stream that closes first or no answer
   * in time sends it again elsewhere; rejects with Undelivered when no shim is linked or none answered, and with the
   * shim's error when ejabberd failed.
   */
  eraseUser(jid: string, account: boolean): Promise<ErasedInEjabberd> {
    return new Promise((resolve, reject) => {
      const e: Erase = { id: String(++this.lastId), jid, account, tries: 0, resolve, reject };
      this.writeErase(e);
    });
  }

  /** A shim's EraseUserAck. */
  erased(stream: ShimStream, ack: EraseUserAck): void {
    const e = this.erasing.get(ack.id);
    if (!e || e.stream !== stream) return;
    clearTimeout(e.timer);
    this.erasing.delete(ack.id);
    if (ack.error) e.reject(new Error(`ejabberd (${ack.node || this.streams.get(stream) || '?'}) could not erase ${e.jid}: ${ack.error}`));
    else e.resolve({ node: ack.node, offline: ack.offline, mam: ack.mam, account: ack.account });
  }

  private writeErase(e: Erase): void {
    const stream = this.pick(e.stream && this.streams.get(e.stream));
    if (!stream) {
      e.reject(new Undelivered('no ejabberd shim is linked to this sidecar'));
      return;
    }
    e.tries++;
    e.stream = stream;
    this.erasing.set(e.id, e);
    e.timer = setTimeout(() => this.eraseAgain(e), this.ackTimeoutMs);
    e.timer.unref();
    stream.write({ eraseUser: { id: e.id, jid: e.jid, account: e.account } } satisfies SidecarMessage);
  }

  private eraseAgain(e: Erase): void {
    clearTimeout(e.timer);
    this.erasing.delete(e.id);
    if (e.tries >= this.maxTries) e.reject(new Undelivered(`no shim answered the erasure of ${e.jid} after ${e.tries} tries`));
    else this.writeErase(e);
  }

  /** The cluster saw a node leave or join: a node that left gets no Injects while another can take them. */
  nodeState(node: string, up: boolean): void {
    this.clusterNodes.add(node);
    if (up) this.downNodes.delete(node);
    else this.downNodes.add(node);
  }

  /** The nodes of the cluster, not reported gone, that have no stream here. */
  awaitedNodes(): string[] {
    const open = new Set(this.streams.values());
    return [...this.clusterNodes].filter((n) => !this.downNodes.has(n) && !open.has(n)).sort();
  }

  /**
   * Some node has a stream here, and so has every node of the cluster not reported gone: the shims can reach this
   * sidecar (a sidecar that just started takes shops back from a live standby only then).
   */
  reachedByAll(): boolean {
    return this.streams.size > 0 && this.awaitedNodes().length === 0;
  }

  ack(stream: ShimStream, id: string): void {
    const inj = this.inFlight.get(id);
    if (!inj || inj.stream !== stream) return;
    clearTimeout(inj.timer);
    this.inFlight.delete(id);
    inj.resolve();
  }

  /**
   * Resolves once a shim has handed every stanza to ejabberd; rejects with Undelivered when it gives up.
   * `keys` (one per stanza, or none): a shim routes a stanza whose key it routed before no more.
   */
  deliver(stanzas: (string | Buffer)[], keys: string[] = []): Promise<void> {
    if (stanzas.length === 0) return Promise.resolve();
    if (keys.length !== 0 && keys.length !== stanzas.length) return Promise.reject(new Error('one key per stanza, or none'));
    return new Promise((resolve, reject) => {
      const inj: Inject = {
        id: String(++this.lastId),
        stanzas: stanzas.map((s) => (typeof s === 'string' ? Buffer.from(s) : s)),
        keys: keys.map((k) => Buffer.from(k)),
        tries: 0,
        resolve,
        reject,
      };
      this.write(inj);
    });
  }

  /** Fire and forget: a loss is logged. */
  send(stanzas: XmlElement[]): void {
    if (stanzas.length === 0) return;
    this.deliver(stanzas.map(serialize)).catch((e) => this.log.error('injected stanzas lost', { count: stanzas.length, err: e }));
  }

  /** Asks every stream of `node` to report its node's agents again (ReportPresence); returns how many were asked. */
  reportPresence(node: string): number {
    let asked = 0;
    for (const [s, n] of this.streams) {
      if (n !== node) continue;
      s.write({ reportPresence: {} } satisfies SidecarMessage);
      asked++;
    }
    return asked;
  }

  pushWatchList(watch: WatchList): void {
    for (const s of this.streams.keys()) s.write({ watch });
  }

  /** Shutdown: end every shim stream (the shims reconnect to another sidecar or retry). */
  endAll(): void {
    for (const s of this.streams.keys()) s.end();
    this.streams.clear();
    for (const inj of [...this.inFlight.values(), ...this.waiting]) {
      clearTimeout(inj.timer);
      inj.reject(new Undelivered('sidecar shutting down'));
    }
    this.inFlight.clear();
    this.waiting = [];
    for (const e of this.erasing.values()) {
      clearTimeout(e.timer);
      e.reject(new Undelivered('sidecar shutting down'));
    }
    this.erasing.clear();
  }

  private write(inj: Inject): void {
    const stream = this.pick(inj.stream && this.streams.get(inj.stream));
    if (!stream) {
      this.wait(inj);
      return;
    }
    inj.tries++;
    inj.stream = stream;
    this.inFlight.set(inj.id, inj);
    inj.timer = setTimeout(() => this.retry(inj), this.ackTimeoutMs);
    inj.timer.unref();
    stream.write({ inject: { stanzas: inj.stanzas, id: inj.id, keys: inj.keys } } satisfies SidecarMessage);
  }

  private retry(inj: Inject): void {
    clearTimeout(inj.timer);
    this.inFlight.delete(inj.id);
    if (inj.tries >= this.maxTries) {
      inj.reject(new Undelivered(`no shim acknowledged after ${inj.tries} tries`));
      return;
    }
    this.write(inj);
  }

  private wait(inj: Inject): void {
    this.waiting.push(inj);
    this.waitingStanzas += inj.stanzas.length;
    while (this.waitingStanzas > this.maxWaiting && this.waiting.length > 1) {
      const old = this.waiting.shift()!;
      this.waitingStanzas -= old.stanzas.length;
      old.reject(new Undelivered(`no shim connected and ${this.maxWaiting} stanzas already waiting`));
    }
  }

  /** Round-robin over the streams of live nodes, avoiding `notNode` (where the last try failed) when possible. */
  private pick(notNode?: string): ShimStream | undefined {
    if (this.streams.size === 0) return undefined;
    const all = [...this.streams];
    const live = all.filter(([, node]) => !this.downNodes.has(node));
    const elsewhere = live.filter(([, node]) => node !== notNode);
    const from = (elsewhere.length > 0 ? elsewhere : live.length > 0 ? live : all).map(([s]) => s);
    this.next = (this.next + 1) % from.length;
    return from[this.next];
  }
}
