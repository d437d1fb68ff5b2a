// What the shims tell besides stanzas: their node's streams opening and closing, nodes joining or
// leaving the cluster, and agents' presence. Presence decides who can take chats, so an agent who
// becomes available takes the oldest waiting visitors of its shops at once.
import { SessionEvent_Kind as Kind, type SessionEvent } from '../gen/consult/v1/filter.js';
import { bareJid } from '../xmpp/jid.js';
import type { Directory } from './directory.js';
import type { Presence } from './presence.js';

export interface ShimEventsDeps {
  directory: Directory;
  presence: Presence;
  /** Assigns a shop's waiting visitors while agents have room. */
  drainQueue: (shopJid: string) => Promise<void>;
  /** Asks `node`'s streams connected here to report their node's agents again (ShimLink.reportPresence). */
  askPresence?: (node: string) => void;
}

export class ShimEvents {
  constructor(private readonly deps: ShimEventsDeps) {}

  /**
   * A shim's stream said hello: its node is alive and reports its presence again. `cluster` is the cluster as that
   * node sees it: presence held from a node outside it (a crash while no sidecar watched) is dropped.
   */
  async nodeConnected(node: string, cluster: readonly string[] = []): Promise<void> {
    await this.deps.presence.streamOpened(node);
    if (cluster.length > 0) await this.deps.presence.clusterIs([...cluster, node]);
  }

  /** A shim's stream closed: its node's presence goes unless it is back within the grace period. */
  nodeDisconnected(node: string): void {
    this.deps.presence.streamClosed(node);
  }

  /**
   * A node reported another one leaving (or joining) the cluster. One that joins (a healed split, a restart) and is
   * connected here is asked to report its agents again: presence dropped or gone stale while it was apart comes
   * back without any client reconnecting. (One that is not connected reports everything when it says hello.)
   */
  async clusterChanged(node: string, up: boolean): Promise<void> {
    const { presence } = this.deps;
    if (!up) return presence.nodeDown(node);
    presence.nodeUp(node);
    if (presence.connected(node)) this.deps.askPresence?.(node);
  }

  async handleEvent(event: SessionEvent, node: string): Promise<void> {
    const { directory, presence } = this.deps;
    const full = event.jid;
    const agent = bareJid(full);
    if (!directory.isAgent(agent)) return;
    const resource = full.includes('/') ? full.slice(full.indexOf('/') + 1) : '';
    if (event.kind === Kind.PRESENCE_SET) {
      const write = presence.set({ agent, resource, node, show: event.show, priority: event.priority });
      // An agent who can take chats now takes the oldest waiting visitors.
      for (const shop of directory.shopsOf(agent)) await this.deps.drainQueue(shop.jid);
      await write;
    } else if (event.kind === Kind.PRESENCE_UNSET || event.kind === Kind.SESSION_CLOSE) {
      await presence.remove(agent, resource, node);
    }
  }
}
