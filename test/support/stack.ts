// The e2e stack most suites run on: the real sidecar process (src/main.ts) with a config of the test's, a
// private ejabberd node whose mod_consult is linked to it (authenticated: grpc.shims lists the node's
// credential), the test's users registered, XMPP clients connected on demand; and one stop() for all of it.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModuleOptionValue } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import { type Ejabberd, newShimCredential, type ShimCredential, type StartEjabberdOptions, startEjabberd } from './ejabberd.js';
import { type SidecarProcess, startSidecar, writeConfig } from './sidecar.js';
import { connectClient, type TestClient } from './xmpp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let built = false;
/** `make -C erlang-shim` (once per test process); throws with make's output when the build fails. */
export function buildShim(): void {
  if (built) return;
  try {
    execFileSync('make', ['-s', '-C', path.join(repoRoot, 'erlang-shim')], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer; message: string };
    throw new Error(`make -C erlang-shim failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
  built = true;
}

export interface StackOptions {
  /** The sidecar's config (shops, systemJid, store, admin, timers, ...); `grpc.shims` is the node's credential unless it sets `grpc`. */
  config: Record<string, unknown>;
  /** Default 'localhost'. */
  domain?: string;
  /** mod_consult's options, over `sidecar_host: 127.0.0.1` and `sidecar_port: <the sidecar's port>`. */
  shimOptions?: Record<string, ModuleOptionValue>;
  visitors?: StartEjabberdOptions['visitors'];
  shimInstall?: StartEjabberdOptions['shimInstall'];
  /** Passed to startEjabberd: top-level ejabberd.yml lines (default none). */
  extraConfig?: StartEjabberdOptions['extraConfig'];
  /** Passed to startEjabberd: more modules and their options (default none). */
  extraModules?: StartEjabberdOptions['extraModules'];
  /** Accounts of `domain` registered before start resolves, all with `password`. */
  users?: string[];
  /** Default 'secret'. */
  password?: string;
  /** Resolve only once the sidecar took the shim's hello (default true; false when shimOptions point elsewhere). */
  linked?: boolean;
  /** How long the sidecar may take to listen (default 30 s). */
  sidecarStartMs?: number;
}

export interface Stack {
  domain: string;
  password: string;
  ejabberd: Ejabberd;
  /** The sidecar now running; startSidecarAgain() replaces it. */
  sidecar: SidecarProcess;
  configFile: string;
  credential: ShimCredential;
  /** `xmpp://127.0.0.1:<c2s port>`, for connectClient. */
  service: string;
  /** Connects `username` with the stack's password (resource 'r', the stack's domain unless given); stop() stops it. */
  connect(username: string, resource?: string, domain?: string): Promise<TestClient>;
  /** A new sidecar process on the same port and config (the old one must be gone); resolves once the shim said hello to it. */
  startSidecarAgain(timeoutMs?: number): Promise<SidecarProcess>;
  /** Stops every client connected so far (e.g. before ejabberd restarts under them). */
  stopClients(): Promise<void>;
  /** Clients, ejabberd, then the sidecar (woken first if it was SIGSTOPped); every part is stopped even if one fails. */
  stop(): Promise<void>;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const domain = opts.domain ?? 'localhost';
  const password = opts.password ?? 'secret';
  if ((opts.shimInstall ?? 'ebin') === 'ebin') buildShim();
  const credential = newShimCredential();
  const configFile = writeConfig({ grpc: { shims: [credential] }, ...opts.config });
  const port = await freePort();
  let sidecar = startSidecar(configFile, port);
  const clients: TestClient[] = [];
  let ejabberd: Ejabberd | undefined;

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const errors: unknown[] = [];
    await Promise.all(clients.map((c) => c.stop().catch((e) => errors.push(e))));
    sidecar.signal('SIGCONT');
    await ejabberd?.stop().catch((e) => errors.push(e));
    await sidecar.kill().catch((e) => errors.push(e));
    if (errors.length) throw errors[0];
  };

  try {
    await sidecar.waitForLog('sidecar listening', 0, opts.sidecarStartMs ?? 30_000);
    ejabberd = await startEjabberd({
      domain,
      credential,
      visitors: opts.visitors,
      shimInstall: opts.shimInstall,
      extraConfig: opts.extraConfig,
      extraModules: opts.extraModules,
      shimOptions: { sidecar_host: '127.0.0.1', sidecar_port: port, ...opts.shimOptions },
    });
    if (opts.linked ?? true) await sidecar.waitForLog('shim hello', 0, 20_000);
    const node = ejabberd;
    await Promise.all((opts.users ?? []).map((u) => node.register(u, password)));
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
  const node = ejabberd;
  const service = `xmpp://127.0.0.1:${node.c2sPort}`;

  const stack: Stack = {
    domain,
    password,
    ejabberd: node,
    sidecar,
    configFile,
    credential,
    service,
    async connect(username, resource = 'r', userDomain = domain) {
      const c = await connectClient({ service, domain: userDomain, username, password, resource });
      clients.push(c);
      return c;
    },
    async startSidecarAgain(timeoutMs = 30_000) {
      sidecar = startSidecar(configFile, port);
      stack.sidecar = sidecar;
      await sidecar.waitForLog('shim hello', 0, timeoutMs);
      return sidecar;
    },
    async stopClients() {
      await Promise.all(clients.splice(0).map((c) => c.stop()));
    },
    stop,
  };
  return stack;
}
