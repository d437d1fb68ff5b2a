// The durable stores an e2e suite runs on, one suite per store: a PGlite directory or a private PostgreSQL 15
// server (test/support/postgres.ts), each a suite's own, gone with stop().
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startPostgres } from './postgres.js';
import type { Ejabberd } from './ejabberd.js';
import type { SidecarProcess } from './sidecar.js';
import { waitUntil } from './wait.js';

export const DURABLE_STORES = ['pglite', 'postgres'] as const;
export type DurableStore = (typeof DURABLE_STORES)[number];

export interface E2eStore {
  kind: DurableStore;
  /** The sidecar's `store`. */
  url: string;
  stop(): Promise<void>;
}

export async function openStore(kind: DurableStore): Promise<E2eStore> {
  if (kind === 'postgres') {
    const pg = await startPostgres();
    return { kind, url: pg.url, stop: () => pg.stop() };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-e2e-pglite-'));
  return { kind, url: `pglite:${dir}`, stop: async () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Resolves once `sidecar` decides every one of `shops` (its 'took the lease of a shop' line for each). A sidecar
 * started again on PostgreSQL after a SIGKILL waits for its predecessor's leases to run out (about 5 s); until then
 * it refuses the shops' stanzas (service-unavailable) and their admin calls (421). On PGlite it owns them at once.
 */
export async function decidesShops(sidecar: SidecarProcess, shops: readonly string[], timeoutMs = 30_000): Promise<void> {
  const took = (shop: string) => sidecar.lines.some((l) => l.includes('took the lease of a shop') && l.includes(`"shop":"${shop}"`));
  await waitUntil(`the sidecar deciding ${shops.join(', ')}`, () => shops.every(took), {
    timeoutMs,
    detail: () => sidecar.lines.slice(-20).join('\n'),
  });
}

/**
 * Resolves once ejabberd's shim sends the shops' stanzas to a sidecar again (`ejabberdctl consult_owned` lists each
 * under a connection). A sidecar deciding a shop (decidesShops) has still to push its watch list to the shim; until
 * the shim has it, the shop's stanzas bounce with service-unavailable.
 */
export async function shimRoutes(ejabberd: Ejabberd, shops: readonly string[], timeoutMs = 30_000): Promise<void> {
  let last = '';
  await waitUntil(
    `the shim routing ${shops.join(', ')}`,
    async () => {
      last = (await ejabberd.ctl('consult_owned')).stdout;
      const listed = last.split('\n').map((l) => l.trim().split(/\s/)[0]);
      return shops.every((shop) => listed.includes(shop));
    },
    { timeoutMs, detail: () => last },
  );
}
