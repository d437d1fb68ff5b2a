// Renders the ejabberd.yml / ejabberdctl.cfg used both by the e2e test harness
// (test/support/ejabberd.ts) and by `scripts/ejabberd-up.ts` (scripts/run.sh),
// so tests and the demo run the same server configuration.
//
// Layout of a node directory (everything owned by user `ejabberd`, because
// Debian's ejabberdctl su's to it when run as root):
//   <dir>/ejabberd.yml  <dir>/ejabberdctl.cfg  <dir>/inetrc
//   <dir>/logs/ejabberd.log  <dir>/spool/ (mnesia)  <dir>/shim/ebin/ (-pa)  <dir>/ejabberd.pid
//   <dir>/ejabberd-modules/ (CONTRIB_MODULES_PATH: ext_mod's sources/ and installed modules)
//   <dir>/modules.d/ (CONTRIB_MODULES_CONF_DIR: <module>.yml here replaces a module's own conf)
import path from 'node:path';

export type ModuleScalar = string | number | boolean;
/** A list (e.g. mod_consult's `sidecars: ["host:port", ...]`) renders as a YAML flow sequence. */
export type ModuleOptionValue = ModuleScalar | ModuleScalar[];

export interface EjabberdConfigOptions {
  domain: string;
  c2sPort: number;
  /**
   * Optional loopback HTTP listener: /api -> mod_http_api (ejabberd's admin API, loopback only; see httpApi) and
   * /ws -> ejabberd_http_ws (XMPP over WebSocket, RFC 7395: the visitor widget and the agent console).
   */
  httpPort?: number;
  /**
   * Whether the HTTP listener serves /api (default true). Whoever reaches it from loopback may run every command
   * (register accounts, restart ejabberd), which suits a test harness and nothing else: the demo (scripts/run.sh,
   * scripts/ejabberd-up.ts) sets false and registers its accounts with ejabberdctl, which needs the Erlang cookie.
   */
  httpApi?: boolean;
  /**
   * A second vhost for web visitors (e.g. `visitors.localhost`). When set:
   *  - in-band registration (XEP-0077) is open on this vhost only: the widget registers a random
   *    account once and keeps its credentials in the browser's localStorage;
   *  - mod_block_strangers refuses (with an error) messages and subscriptions to any user from a
   *    sender on this vhost, unless the sender is in the recipient's roster. Everything the sidecar
   *    routes comes from a shop or the server (`domain`), which is allowed, and users of `domain`
   *    are never affected: visitors can reach shops (mod_consult intercepts those) and nobody else;
   *  - c2s traffic from its users (TCP and WebSocket) goes through the `visitor` shaper.
   */
  visitorDomain?: string;
  /** Bytes per second a visitor may send (shaper `visitor`; default 1000, burst 4x). */
  visitorShaperRate?: number;
  /** Seconds between two in-band registrations from one IP address (mod_register; default 60). */
  visitorRegistrationTimeoutSec?: number | 'infinity';
  /**
   * XEP-0363 HTTP File Upload (mod_http_upload) on every vhost, with the visitor vhost's (needs httpPort):
   * service `upload.<vhost>`, PUT and GET at http://127.0.0.1:<httpPort>/upload/<vhost>/… (one put_url per vhost,
   * as ejabberd names each host's upload process after it), files under `docroot`, CORS open to any origin
   * (a slot's URL is its secret; no cookies are involved), files above `maxSize` bytes refused (default 10 MB).
   */
  upload?: { docroot: string; maxSize?: number };
  /** Options for `mod_consult`; when undefined the module is not loaded. */
  shimOptions?: Record<string, ModuleOptionValue>;
  loglevel?: 'critical' | 'error' | 'warning' | 'info' | 'debug';
  /** Top-level YAML lines appended as they are, e.g. `sql_type: pgsql` (default none). */
  extraConfig?: string[];
  /** More modules under `modules:`, each with its options, e.g. `{ mod_mam: { db_type: 'sql' } }` (default none). */
  extraModules?: Record<string, Record<string, ModuleOptionValue>>;
}

export interface NodeLayout {
  dir: string;
  configPath: string;
  ctlConfigPath: string;
  logsDir: string;
  logFile: string;
  spoolDir: string;
  /**
   * On -pa. Not <dir>/ebin: OTP takes the name of a code path directory's parent, up to
   * the first '-', for an application name, so <dir> = .run/ejabberd or /tmp/ejabberd-test-x
   * made code:lib_dir(ejabberd) <dir>: ejabberd then missed its priv/msgs (an [error] at
   * every start) and ext_mod its include/ (module_install could not compile).
   */
  ebinDir: string;
  pidPath: string;
  inetrcPath: string;
  /** CONTRIB_MODULES_PATH: `module_install` takes sources/<mod>/ and installs into <mod>/. */
  modulesDir: string;
  /** CONTRIB_MODULES_CONF_DIR: a <mod>.yml here is loaded instead of the module's conf/<mod>.yml. */
  modulesConfDir: string;
}

export function nodeLayout(dir: string): NodeLayout {
  const abs = path.resolve(dir);
  return {
    dir: abs,
    configPath: path.join(abs, 'ejabberd.yml'),
    ctlConfigPath: path.join(abs, 'ejabberdctl.cfg'),
    logsDir: path.join(abs, 'logs'),
    logFile: path.join(abs, 'logs', 'ejabberd.log'),
    spoolDir: path.join(abs, 'spool'),
    ebinDir: path.join(abs, 'shim', 'ebin'),
    pidPath: path.join(abs, 'ejabberd.pid'),
    inetrcPath: path.join(abs, 'inetrc'),
    modulesDir: path.join(abs, 'ejabberd-modules'),
    modulesConfDir: path.join(abs, 'modules.d'),
  };
}

/** YAML value: numbers/booleans bare, strings double-quoted (JSON strings are valid YAML), lists as `[a, b]`. */
function yamlScalar(v: ModuleOptionValue): string {
  if (Array.isArray(v)) return `[${v.map(yamlScalar).join(', ')}]`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export function renderEjabberdYml(o: EjabberdConfigOptions): string {
  const httpApi = !!o.httpPort && o.httpApi !== false;
  const lines: string[] = [
    '# Generated by scripts/ejabberd-config.ts -- do not edit by hand.',
    `loglevel: ${o.loglevel ?? 'info'}`,
    'log_rotate_count: 0',
    // In-band registrations from one IP address are this far apart (only the visitor vhost has any).
    ...(o.visitorDomain ? [`registration_timeout: ${o.visitorRegistrationTimeoutSec ?? 60}`] : []),
    'hosts:',
    `  - ${JSON.stringify(o.domain)}`,
    ...(o.visitorDomain ? [`  - ${JSON.stringify(o.visitorDomain)}`] : []),
    'listen:',
    '  -',
    `    port: ${o.c2sPort}`,
    '    ip: "127.0.0.1"',
    '    module: ejabberd_c2s',
    '    max_stanza_size: 262144',
    '    access: c2s',
    // Per user, chosen at resource binding; WebSocket sessions take the first c2s listener's shaper too.
    '    shaper: c2s_shaper',
    // Plain TCP on loopback: no certificates needed for tests/demo.
    '    starttls: false',
    '    starttls_required: false',
  ];
  if (o.httpPort) {
    lines.push(
      '  -',
      `    port: ${o.httpPort}`,
      '    ip: "127.0.0.1"',
      '    module: ejabberd_http',
      '    request_handlers:',
      ...(httpApi ? ['      /api: mod_http_api'] : []),
      '      /ws: ejabberd_http_ws',
      ...(o.upload ? ['      /upload: mod_http_upload'] : []),
    );
  }
  const visitorRate = o.visitorShaperRate ?? 1000;
  lines.push(
    'shaper:',
    '  visitor:',
    `    rate: ${visitorRate}`,
    `    burst_size: ${visitorRate * 4}`,
    'shaper_rules:',
    '  c2s_shaper:',
    ...(o.visitorDomain ? ['    visitor: visitors'] : []),
    '    none: all',
  );
  lines.push(
    'acl:',
    '  loopback:',
    '    ip:',
    '      - 127.0.0.0/8',
    '  staff:',
    '    server:',
    `      - ${JSON.stringify(o.domain)}`,
    ...(o.visitorDomain ? ['  visitors:', '    server:', `      - ${JSON.stringify(o.visitorDomain)}`] : []),
    'access_rules:',
    '  c2s:',
    '    deny: blocked',
    '    allow: all',
    // Accounts of `domain` are created with `ejabberdctl register`, never in-band; visitors register themselves.
    '  register:',
    ...(o.visitorDomain ? ['    allow: visitors'] : []),
    '    deny: all',
    // mod_http_upload: who may ask for a slot (staff, and visitors when there is a visitor vhost).
    ...(o.upload ? ['  upload:', '    - allow: staff', ...(o.visitorDomain ? ['    - allow: visitors'] : [])] : []),
    // mod_block_strangers: who may message a user without being in its roster.
    '  not_stranger:',
    '    allow: staff',
    '    deny: all',
    'api_permissions:',
    '  "console commands":',
    '    from: [ejabberd_ctl]',
    '    who: all',
    '    what: "*"',
    ...(httpApi ? ['  "loopback http":', '    from: [mod_http_api]', '    who:', '      acl: loopback', '    what: "*"'] : []),
    'modules:',
    '  mod_admin_extra: {}',
    '  mod_carboncopy: {}',
    '  mod_disco: {}',
    '  mod_offline: {}',
    '  mod_ping: {}',
    '  mod_roster: {}',
    // Defaults kept: stream management is on in real deployments too.
    '  mod_stream_mgmt: {}',
  );
  if (httpApi) lines.push('  mod_http_api: {}');
  if (o.visitorDomain) {
    lines.push(
      '  mod_register:',
      '    access: register',
      '    access_from: none',
      '    welcome_message: {subject: "", body: ""}',
      '  mod_block_strangers:',
      '    access: not_stranger',
      '    allow_local_users: false',
      '    drop: true',
      '    log: true',
    );
  }
  if (o.upload && o.httpPort) {
    lines.push(
      '  mod_http_upload:',
      `    put_url: "http://127.0.0.1:${o.httpPort}/upload/@HOST@"`,
      `    docroot: ${JSON.stringify(o.upload.docroot)}`,
      `    max_size: ${o.upload.maxSize ?? 10 * 1024 * 1024}`,
      '    access: upload',
      '    custom_headers:',
      '      "Access-Control-Allow-Origin": "*"',
      '      "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS"',
      '      "Access-Control-Allow-Headers": "Content-Type"',
    );
  }
  const moduleLines = (module: string, options: Record<string, ModuleOptionValue>) => {
    const entries = Object.entries(options);
    if (entries.length === 0) lines.push(`  ${module}: {}`);
    else {
      lines.push(`  ${module}:`);
      for (const [k, v] of entries) lines.push(`    ${k}: ${yamlScalar(v)}`);
    }
  };
  for (const [module, options] of Object.entries(o.extraModules ?? {})) moduleLines(module, options);
  if (o.shimOptions) moduleLines('mod_consult', o.shimOptions);
  lines.push(...(o.extraConfig ?? []));
  return `${lines.join('\n')}\n`;
}

/**
 * One module's own config file, as ext_mod loads it from CONTRIB_MODULES_CONF_DIR
 * (`<dir>/modules.d/<module>.yml`) or from the module's conf/ directory.
 */
export function renderModuleConf(module: string, options: Record<string, ModuleOptionValue>): string {
  const entries = Object.entries(options);
  const lines = ['# Generated by scripts/ejabberd-config.ts -- do not edit by hand.', 'modules:'];
  if (entries.length === 0) lines.push(`  ${module}: {}`);
  else {
    lines.push(`  ${module}:`);
    for (const [k, v] of entries) lines.push(`    ${k}: ${yamlScalar(v)}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface CtlConfigOptions {
  /** Erlang node name, e.g. `consult_ab12@localhost`; unique per instance. */
  nodeName: string;
  /** Fixed distribution port: ejabberdctl then skips epmd entirely. Unused when epmdPort is set. */
  distPort: number;
  /**
   * Use the epmd listening on this loopback port instead of going without one. Needed for a
   * cluster on one host: with ERL_DIST_PORT a node looks for every other node on its own
   * port, so two nodes could not reach each other. The node then listens on a port of the
   * kernel's choice, which epmd tells the others (a fixed one would also be taken by every
   * ctl call, since ejabberdctl gives its clients the node's options).
   */
  epmdPort?: number;
  /** Erlang cookie for the node and its ctl calls (default: user ejabberd's ~/.erlang.cookie). */
  cookie?: string;
  /** More flags for the node's VM, e.g. `+sbwt none` (docs/production.md, "Sharing cores with the sidecar"). */
  erlFlags?: string;
}

export function renderEjabberdctlCfg(layout: NodeLayout, o: CtlConfigOptions): string {
  return [
    '# Generated by scripts/ejabberd-config.ts -- do not edit by hand.',
    `ERLANG_NODE=${o.nodeName}`,
    'INET_DIST_INTERFACE=127.0.0.1',
    ...(o.epmdPort
      ? // The cfg is sourced by ejabberdctl, so the export reaches the node and every ctl call (su keeps it);
        // -start_epmd false: the caller runs that epmd, nobody starts one of its own that would outlive the node.
        [`export ERL_EPMD_PORT=${o.epmdPort}`]
      : [`ERL_DIST_PORT=${o.distPort}`]),
    `ERL_OPTIONS="-pa ${layout.ebinDir} -env ERL_CRASH_DUMP_BYTES 0${o.epmdPort ? ' -start_epmd false' : ''}${o.cookie ? ` -setcookie ${o.cookie}` : ''}${o.erlFlags ? ` ${o.erlFlags}` : ''}"`,
    `EJABBERD_PID_PATH=${layout.pidPath}`,
    'EJABBERD_BYPASS_WARNINGS=true',
    `CONTRIB_MODULES_PATH=${layout.modulesDir}`,
    `CONTRIB_MODULES_CONF_DIR=${layout.modulesConfDir}`,
    '',
  ].join('\n');
}

/** Common ejabberdctl arguments pointing every path at the node directory. */
export function ctlBaseArgs(layout: NodeLayout): string[] {
  return [
    '--config-dir',
    layout.dir,
    '--config',
    layout.configPath,
    '--ctl-config',
    layout.ctlConfigPath,
    '--logs',
    layout.logsDir,
    '--spool',
    layout.spoolDir,
  ];
}
