// The one place the shims' watch list is built and pushed: the shops and agents whose stanzas they
// forward, and the shops this sidecar decides (WatchList.owned), so that each shop's stanzas go to its
// owner. It is pushed when the shops held here change and when a directory reload changed it.
import type { Directory } from '../desk/directory.js';
import type { HeldShops } from '../desk/held-shops.js';

export interface WatchListMessage {
  shops: string[];
  agents: string[];
  owned: string[];
  /** The lease epoch of each owned shop (same order), as decimal strings; empty for a store without leases. */
  ownedEpochs: string[];
  sidecar: string;
}

export interface WatchListDeps {
  directory: Directory;
  shops: HeldShops;
  /** This sidecar's stable id, told to the shims with the shops it owns. */
  sidecar: string;
  /** The lease epoch a held shop was taken at (undefined: a store without leases). */
  epochOf?: (shop: string) => number | undefined;
  /** To every shim (ShimLink.pushWatchList). */
  push: (watch: WatchListMessage) => void;
}

export class WatchList {
  private told = '';

  constructor(private readonly deps: WatchListDeps) {}

  current(): WatchListMessage {
    const owned = this.deps.shops.owned();
    const epochs = owned.map((shop) => this.deps.epochOf?.(shop));
    const ownedEpochs = epochs.every((e) => e !== undefined) ? epochs.map(String) : [];
    return { ...this.deps.directory.watchList(), owned, ownedEpochs, sidecar: this.deps.sidecar };
  }

  /** Tells every shim now. */
  publish(): void {
    const watch = this.current();
    this.told = JSON.stringify(watch);
    this.deps.push(watch);
  }

  /** Tells the shims if the list differs from the last one told. */
  publishIfChanged(): void {
    if (JSON.stringify(this.current()) !== this.told) this.publish();
  }
}
