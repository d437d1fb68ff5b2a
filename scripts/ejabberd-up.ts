// CLI used by scripts/run.sh / scripts/stop.sh: runs a private ejabberd node
// (same config templates as the test harness) with mod_consult loaded.
//
//   tsx scripts/ejabberd-up.ts up   --dir .run/ejabberd [--domain localhost] [--port 5222]
//                                   [--http-port N] [--dist-port N] [--node-name NAME]
//                                   [--sidecar-port 50051] [--ebin erlang-shim/ebin]
//                                   [--config config/consult.example.json] [--no-shim]
//                                   [--visitor-domain visitors.localhost]
//   tsx scripts/ejabberd-up.ts down --dir .run/ejabberd
//
// `up` starts the node detached, registers the demo accounts and exits;
// `down` stops the node recorded in <dir>/node.json.
//
// The directory is kept between runs (Mnesia spool: accounts, rosters, offline
// messages); delete it to start over (scripts/run.sh --fresh). Mnesia's data
// belongs to the node name, so the name is chosen once per directory, stored in
// <dir>/node-name and reused on every later `up`.
// Ports: --port is c2s; --http-port (ejabberd_http with /ws only: XMPP over WebSocket for
// the web pages; ejabberd's HTTP admin API is not served, since anyone on the machine could
// use it) and --dist-port (Erlang distribution, used by ejabberdctl; no epmd) default to
// free ports chosen at start. The demo accounts are registered with ejabberdctl.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { canConnect, EjabberdNode, findBeamPids, freePort, type NodeOptions } from './ejabberd-node.js';
import { ctlBaseArgs } from './ejabberd-config.js';

const PASSWORD = 'secret';
const DEFAULT_USERS = ['visitor1', 'shop_2', 'test01', 'test02'];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: '.run/ejabberd' },
    domain: { type: 'string', default: 'localhost' },
    port: { type: 'string', default: '5222' },
    'http-port': { type: 'string' },
    'dist-port': { type: 'string' },
    'node-name': { type: 'string' },
    'sidecar-port': { type: 'string', default: '50051' },
    ebin: { type: 'string', default: 'erlang-shim/ebin' },
    config: { type: 'string' },
    'no-shim': { type: 'boolean', default: false },
    // The web widget's vhost: in-band registration there only, strangers blocked, shaped (scripts/ejabberd-config.ts).
    'visitor-domain': { type: 'string' },
    // The shim's credential for the sidecar (sidecar_token), read from a file so it never shows in `ps`.
    'shim-token-file': { type: 'string' },
  },
});
const dir = path.resolve(values.dir!);
const stateFile = path.join(dir, 'node.json');
const nodeNameFile = path.join(dir, 'node-name');

/** The directory's node name: stored on first use, then always the same (Mnesia's spool is bound to it). */
function nodeNameOf(wanted: string | undefined): string {
  let stored: string | undefined;
  if (fs.existsSync(nodeNameFile)) stored = fs.readFileSync(nodeNameFile, 'utf8').trim() || undefined; // empty: as if missing
  if (!stored && fs.existsSync(stateFile)) stored = (JSON.parse(fs.readFileSync(stateFile, 'utf8')) as NodeOptions).nodeName; // written by an older ejabberd-up
  if (stored && wanted && stored !== wanted) {
    throw new Error(
      `${dir} belongs to node ${stored}, not ${wanted}: its Mnesia spool only works under that name (use another directory, or delete this one to start over)`,
    );
  }
  if (!stored && fs.existsSync(path.join(dir, 'spool', 'schema.DAT'))) {
    throw new Error(
      `${dir} has a Mnesia spool but no node-name file: the spool only works under the node name that created it (put that name in ${nodeNameFile}, or delete ${path.join(dir, 'spool')} to start over)`,
    );
  }
  const name = stored ?? wanted ?? `consult_${crypto.randomBytes(3).toString('hex')}@localhost`;
  if (!/^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$/.test(name)) throw new Error(`bad node name ${JSON.stringify(name)} (want name@host)`);
  return name;
}

function portOf(flag: 'port' | 'http-port' | 'dist-port'): number | undefined {
  const v = values[flag];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`--${flag} ${v}: not a port`);
  return n;
}

/** Local parts of the demo accounts: visitor1 + shops and agents of the sidecar config. */
function demoUsers(configFile: string | undefined, domain: string): string[] {
  if (!configFile || !fs.existsSync(configFile)) return DEFAULT_USERS;
  const cfg = JSON.parse(fs.readFileSync(configFile, 'utf8')) as {
    shops?: Array<{ jid: string; agents?: Array<{ jid: string }> }>;
  };
  const jids = (cfg.shops ?? []).flatMap((s) => [s.jid, ...(s.agents ?? []).map((a) => a.jid)]);
  const users = new Set(['visitor1']);
  for (const jid of jids) {
    const [local, host] = jid.split('@');
    if (host !== domain) console.warn(`warning: ${jid} is not on ${domain}; registering ${local}@${domain}`);
    if (local) users.add(local);
  }
  return [...users];
}

/** Registers a demo account with ejabberdctl (there is no HTTP API); one that exists from an earlier run is fine. */
async function registerOnce(node: EjabberdNode, user: string, domain: string): Promise<void> {
  const r = await node.ctl(['register', user, domain, PASSWORD]);
  if (r.code !== 0 && !/already registered|exists/i.test(r.stdout + r.stderr))
    throw new Error(`ejabberdctl register ${user}@${domain} failed (${r.code}): ${r.stdout}${r.stderr}`);
}

async function up(): Promise<void> {
  await down(); // a node left over from an earlier run
  const c2sPort = portOf('port')!;
  const explicit: Array<[number | undefined, string]> = [
    [c2sPort, `--port (c2s; a system ejabberd? try: systemctl stop ejabberd), or set XMPP_PORT`],
    [portOf('http-port'), '--http-port (EJABBERD_HTTP_PORT)'],
    [portOf('dist-port'), '--dist-port (EJABBERD_DIST_PORT)'],
  ];
  for (const [port, what] of explicit) {
    if (port !== undefined && (await canConnect(port))) throw new Error(`127.0.0.1:${port} is already in use: choose another ${what}`);
  }
  const domain = values.domain!;
  fs.mkdirSync(dir, { recursive: true });
  const opts: NodeOptions = {
    dir,
    domain,
    c2sPort,
    httpPort: portOf('http-port') ?? (await freePort()),
    httpApi: false,
    distPort: portOf('dist-port') ?? (await freePort()),
    nodeName: nodeNameOf(values['node-name']),
    loglevel: 'info',
    shimOptions: values['no-shim']
      ? undefined
      : {
          sidecar_host: '127.0.0.1',
          sidecar_port: Number(values['sidecar-port']),
          timeout: 500,
          failure_policy: 'reject',
          ...(values['shim-token-file'] ? { sidecar_token: fs.readFileSync(values['shim-token-file'], 'utf8').trim() } : {}),
        },
    ebinSources: values['no-shim'] ? [] : [path.resolve(values.ebin!)],
    ...(values['visitor-domain'] ? { visitorDomain: values['visitor-domain'] } : {}),
    // XEP-0363 uploads (the widget's and the console's attachments), kept in the node's directory.
    ...(values['visitor-domain'] ? { upload: { docroot: path.join(path.resolve(dir), 'upload') } } : {}),
    // The agent console's history after a reload (web/console/mam-history.ts): mod_mam archiving every account.
    ...(values['visitor-domain'] ? { extraModules: { mod_mam: { default: 'always' } } } : {}),
  };
  fs.writeFileSync(nodeNameFile, `${opts.nodeName}\n`);
  const existing = fs.existsSync(path.join(dir, 'spool', 'schema.DAT'));
  const node = new EjabberdNode(opts);
  node.prepare(); // config, beams and ownership; the spool is kept
  fs.writeFileSync(stateFile, JSON.stringify(opts, null, 2));
  await node.start();
  const users = demoUsers(values.config, domain);
  for (const u of users) await registerOnce(node, u, domain); // one ctl call at a time (each is a small Erlang VM)
  node.detach(); // keep running after this CLI exits (until `down`)
  console.log(
    [
      `ejabberd ${opts.nodeName} is up (${existing ? 'existing' : 'new'} spool in ${path.join(dir, 'spool')}; log: ${node.logFile})`,
      `  XMPP c2s: 127.0.0.1:${c2sPort}, domain ${domain}, plain TCP (no TLS: allow PLAIN/SCRAM without encryption in your client)`,
      `  WebSocket: ws://127.0.0.1:${opts.httpPort}/ws   Erlang distribution: 127.0.0.1:${opts.distPort}`,
      `  no HTTP admin API: ejabberdctl ${ctlBaseArgs(node.layout).slice(0, 2).join(' ')} … (as root) reaches the node`,
      ...(opts.visitorDomain
        ? [`  visitor vhost ${opts.visitorDomain}: in-band registration (the web widget), may message shops only`]
        : []),
      `  accounts (password "${PASSWORD}"): ${users.map((u) => `${u}@${domain}`).join(', ')}`,
      `  e.g. log in as visitor1@${domain} and message shop_2@${domain}; answer as test01@${domain}`,
    ].join('\n'),
  );
}

async function down(): Promise<void> {
  if (!fs.existsSync(stateFile)) return;
  const opts = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as NodeOptions;
  if (findBeamPids(opts.nodeName).length === 0) return;
  await new EjabberdNode(opts).stop();
  console.log(`ejabberd ${opts.nodeName} stopped`);
}

const cmd = positionals[0] ?? 'up';
const run = cmd === 'up' ? up : cmd === 'down' ? down : null;
if (!run) {
  console.error(`unknown command ${cmd}; use up|down`);
  process.exit(2);
}
run().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(e.message);
    process.exit(1);
  },
);
