// E2E harness: a private, throwaway ejabberd node on loopback per call.
// Independent of any system ejabberd: own node name, own dist/c2s/http ports,
// own temp dir (config, mnesia spool, logs).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderModuleConf, type EjabberdConfigOptions, type ModuleOptionValue } from '../../scripts/ejabberd-config.js';
import { EjabberdNode, freePort, type CtlResult } from '../../scripts/ejabberd-node.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** What the sidecar's grpc.shims lists for a node: its Erlang node name and the shim's token. */
export interface ShimCredential {
  node: string;
  token: string;
}

/**
 * A node name and a token for one test node, made before the node starts: put it in the
 * sidecar's config (`grpc: { shims: [credential] }`) and pass it to startEjabberd.
 */
export function newShimCredential(): ShimCredential {
  return {
    node: `consult_test_${crypto.randomBytes(4).toString('hex')}@localhost`,
    token: crypto.randomBytes(24).toString('hex'), // what the README suggests: openssl rand -hex 24
  };
}

export interface StartEjabberdOptions {
  domain?: string;
  /**
   * The node runs under credential.node and the shim sends credential.token (option
   * sidecar_token, unless shimOptions sets sidecar_token itself). Default: a fresh one, which a
   * sidecar without grpc.shims accepts like any other.
   */
  credential?: ShimCredential;
  /** Load mod_consult (default true). */
  withShim?: boolean;
  /** More flags for the node's VM (ERL_OPTIONS), e.g. `+sbwt none`. */
  erlFlags?: string;
  /**
   * Rendered under `modules: mod_consult:`; e.g. sidecar_host, sidecar_port, timeout, failure_policy.
   * A list value renders as a YAML list (e.g. `sidecars: ['127.0.0.1:50051', '127.0.0.1:50052']`).
   */
  shimOptions?: Record<string, ModuleOptionValue>;
  /** Where mod_consult.beam lives (default <repo>/erlang-shim/ebin); copied into the node dir. */
  ebinDir?: string;
  /**
   * How mod_consult gets into the node.
   * - 'ebin' (default): the beams of `ebinDir` are copied to <dir>/shim/ebin, which is on -pa;
   *   shimOptions go into ejabberd.yml.
   * - 'module_install': as the README tells an admin. `make -C erlang-shim install-source`
   *   copies the module source to the node's own CONTRIB_MODULES_PATH (<dir>/ejabberd-modules);
   *   once the node is up, shimOptions, if given, become <dir>/modules.d/mod_consult.yml (the
   *   node's CONTRIB_MODULES_CONF_DIR, used instead of the module's conf/mod_consult.yml) and
   *   `ejabberdctl module_install mod_consult` compiles, installs and starts it.
   *   Nothing outside <dir> is touched.
   */
  shimInstall?: 'ebin' | 'module_install';
  /** The module source for 'module_install' (default <repo>/erlang-shim). */
  shimSourceDir?: string;
  loglevel?: 'critical' | 'error' | 'warning' | 'info' | 'debug';
  startTimeoutMs?: number;
  /** A visitor vhost for the web widget (see EjabberdConfigOptions): IBR there, strangers blocked, shaper. */
  visitors?: Pick<EjabberdConfigOptions, 'visitorDomain' | 'visitorShaperRate' | 'visitorRegistrationTimeoutSec'> & {
    /** With visitors, XEP-0363 HTTP upload is on (docroot <dir>/upload); files above this many bytes are refused (default 10 MB). */
    uploadMaxSize?: number;
  };
  /** Top-level ejabberd.yml lines (e.g. `sql_type: pgsql`, `sql_server: ...`); see EjabberdConfigOptions. */
  extraConfig?: EjabberdConfigOptions['extraConfig'];
  /** More modules and their options (e.g. `{ mod_mam: { db_type: 'sql' } }`); see EjabberdConfigOptions. */
  extraModules?: EjabberdConfigOptions['extraModules'];
}

export interface Ejabberd {
  domain: string;
  c2sPort: number;
  /** Loopback mod_http_api port (POST http://127.0.0.1:<port>/api/<command>). */
  httpPort: number;
  nodeName: string;
  /** The node name and the token its shim sends. */
  credential: ShimCredential;
  dir: string;
  logFile: string;
  /** CONTRIB_MODULES_PATH of this node: sources/mod_consult/ and the installed mod_consult/. */
  modulesDir: string;
  /** CONTRIB_MODULES_CONF_DIR of this node. */
  modulesConfDir: string;
  /**
   * 'module_install' nodes: writes modules.d/mod_consult.yml with these options (plus the
   * credential's sidecar_token unless they set one) and runs `ejabberdctl reload_config`;
   * rejects when ejabberd does not take the new config.
   */
  configureShim(options: Record<string, ModuleOptionValue>): Promise<void>;
  ctl(...args: string[]): Promise<CtlResult>;
  /** POST /api/<command> with a JSON body; resolves to the parsed JSON reply. */
  api(command: string, args: Record<string, unknown>): Promise<unknown>;
  register(user: string, password: string): Promise<void>;
  logTail(n?: number): string;
  /** `ejabberdctl stop`, then start again with the same directory, config and ports. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** ejabberd's log so far; its length marks where a later waitForLogLine starts reading. */
export const logText = (node: Pick<Ejabberd, 'logFile'>) => fs.readFileSync(node.logFile, 'utf8');

/** The first line of the node's log after character `from` matching `re`; rejects with the log's tail after timeoutMs. */
export async function waitForLogLine(node: Pick<Ejabberd, 'logFile' | 'logTail'>, from: number, re: RegExp, timeoutMs = 10_000) {
  for (const deadline = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 100))) {
    const line = logText(node)
      .slice(from)
      .split('\n')
      .find((l) => re.test(l));
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no ejabberd log line matching ${re}:\n${node.logTail(30)}`);
  }
}

let logFences = 0;

/**
 * Resolves once the node's log file holds every line logged before the call. ejabberd's log handler writes a
 * moment after the event, so "no such line" is only a finding after this: an admin API call made now is logged
 * (mod_http_api, at info) after anything logged before it, and its line is waited for. Needs loglevel info or
 * more. Resolves to the log's length after that line.
 */
export async function logFence(node: Pick<Ejabberd, 'api' | 'logFile' | 'logTail' | 'domain'>, timeoutMs = 10_000): Promise<number> {
  const mark = `log-fence-${process.pid}-${++logFences}`;
  const from = logText(node).length;
  await node.api('check_account', { user: mark, host: node.domain });
  await waitForLogLine(node, from, new RegExp(`API call check_account .*${mark}`), timeoutMs);
  return logText(node).length;
}

export async function startEjabberd(opts: StartEjabberdOptions = {}): Promise<Ejabberd> {
  const domain = opts.domain ?? 'localhost';
  const withShim = opts.withShim ?? true;
  const contrib = withShim && opts.shimInstall === 'module_install';
  const credential = opts.credential ?? newShimCredential();
  const withToken = (o: Record<string, ModuleOptionValue>) => ({ sidecar_token: credential.token, ...o });
  const [c2sPort, httpPort, distPort] = [await freePort(), await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ejabberd-test-'));
  const { uploadMaxSize, ...visitorOptions } = opts.visitors ?? {};
  const node = new EjabberdNode({
    dir,
    domain,
    c2sPort,
    httpPort,
    distPort,
    nodeName: credential.node,
    loglevel: opts.loglevel ?? 'info',
    shimOptions: withShim && !contrib ? withToken(opts.shimOptions ?? {}) : undefined,
    removeDirOnExit: process.env.KEEP_EJABBERD !== '1',
    ebinSources: withShim && !contrib ? [opts.ebinDir ?? path.join(repoRoot, 'erlang-shim', 'ebin')] : [],
    ...visitorOptions,
    ...(opts.visitors ? { upload: { docroot: path.join(dir, 'upload'), maxSize: uploadMaxSize } } : {}),
    extraConfig: opts.extraConfig,
    extraModules: opts.extraModules,
    erlFlags: opts.erlFlags,
  });
  const L = node.layout;
  const shimConfFile = path.join(L.modulesConfDir, 'mod_consult.yml');

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await node.stop();
    } finally {
      if (process.env.KEEP_EJABBERD === '1') console.error(`[ejabberd harness] kept ${dir}`);
      else node.removeDir();
    }
  };

  try {
    if (contrib) {
      execFileSync(
        'make',
        ['-s', '-C', opts.shimSourceDir ?? path.join(repoRoot, 'erlang-shim'), 'install-source', `CONTRIB_MODULES_PATH=${L.modulesDir}`],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      fs.mkdirSync(L.modulesConfDir, { recursive: true });
    }
    node.prepare();
    await node.start(opts.startTimeoutMs ?? 60_000);
    if (contrib) {
      // Only now: ejabberd refuses to start (and reload_config fails) while a
      // mod_consult.yml names a module that is not installed.
      if (opts.shimOptions) fs.writeFileSync(shimConfFile, renderModuleConf('mod_consult', withToken(opts.shimOptions)));
      await moduleInstall(node);
    }
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }

  return {
    domain,
    c2sPort,
    httpPort,
    nodeName: node.nodeName,
    credential,
    dir,
    logFile: node.logFile,
    modulesDir: L.modulesDir,
    modulesConfDir: L.modulesConfDir,
    async configureShim(options) {
      if (!contrib) throw new Error("configureShim needs shimInstall: 'module_install'");
      const since = logSize(node.logFile);
      fs.writeFileSync(shimConfFile, renderModuleConf('mod_consult', withToken(options)));
      const r = await node.ctl(['reload_config']);
      const log = logSince(node.logFile, since);
      if (r.code !== 0 || /reload aborted/.test(log)) {
        throw new Error(`reload_config failed (${r.code}): ${r.stdout}${r.stderr}\n${log}`);
      }
    },
    ctl: (...args) => node.ctl(args),
    api: (command, args) => node.api(command, args),
    register: (user, password) => node.register(user, password),
    logTail: (n = 40) => node.logTail(n),
    async restart() {
      await node.stop();
      await node.start(opts.startTimeoutMs ?? 60_000);
    },
    stop,
  };
}

function logSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

function logSince(file: string, offset: number): string {
  try {
    return fs.readFileSync(file).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

/**
 * `ejabberdctl module_install mod_consult`: ext_mod compiles sources/mod_consult/src into
 * its ebin, copies ebin/ and conf/ to <modulesDir>/mod_consult, adds that ebin to the code
 * path and reloads the config, which starts the module. The log is checked too: a config
 * that does not load (say a duplicated mod_consult) leaves the module installed but not
 * running.
 */
async function moduleInstall(node: EjabberdNode): Promise<void> {
  const since = logSize(node.logFile);
  const r = await node.ctl(['module_install', 'mod_consult'], 120_000);
  const log = logSince(node.logFile, since);
  if (r.code !== 0 || !/has been installed/.test(r.stdout) || /reload aborted|\[critical\]/.test(log)) {
    throw new Error(`ejabberdctl module_install mod_consult failed (${r.code}): ${r.stdout}${r.stderr}\n--- log ---\n${log}`);
  }
}
