// Unary gRPC calls of a test to a real sidecar: a visitor's consult stanza through Filter, an agent's presence
// through Notify, and what a verdict says.
import { Action, SessionEvent_Kind as Kind, type StanzaFilterClient, type Verdict } from '../../src/gen/consult/v1/filter.js';
import { parseElement } from '../../src/xmpp/xml.js';

export interface CallsOptions {
  /** The XMPP domain of the visitors, the agent and the Filter calls' host. */
  domain: string;
  /** The shop's JID the visitors write to. */
  shop: string;
  /** Each Filter call's deadline, from when it is sent (default 10 s). */
  deadlineMs?: number;
  /** The full JID whose presence online() sets (default ann@<domain>/pc). */
  agent?: string;
}

export function grpcCalls({ domain, shop, deadlineMs = 10_000, agent = `ann@${domain}/pc` }: CallsOptions) {
  /** Visitor v's consult message with body id `id`. */
  const consult = (v: number, id: string) =>
    Buffer.from(`<message type='consult' from='v${v}@${domain}/web' to='${shop}'><body id='${id}'>hi ${id}</body></message>`);
  /** Visitor v's consult message through Filter: its verdict. */
  const filter = (c: StanzaFilterClient, v: number, id: string) =>
    new Promise<Verdict>((resolve, reject) =>
      c.filter({ seq: '1', hook: 1, host: domain, stanza: consult(v, id), deadlineMs: String(Date.now() + deadlineMs) }, (e, r) =>
        e ? reject(e) : resolve(r!),
      ),
    );
  /** The agent's presence set (online). */
  const online = (c: StanzaFilterClient) =>
    new Promise<void>((resolve, reject) =>
      c.notify({ kind: Kind.PRESENCE_SET, jid: agent, show: '', priority: 0, status: '' }, (e) => (e ? reject(e) : resolve())),
    );
  return { consult, filter, online };
}

/** The JID a verdict relays the stanza to (a rewrite), or undefined. */
export const relayedTo = (v: Verdict) =>
  v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined;

/** Whether the verdict carries the shop's welcome (an auto-reply). */
export const welcomed = (v: Verdict) => v.extra.some((x) => Buffer.from(x).toString().includes("auto_reply='true'"));
