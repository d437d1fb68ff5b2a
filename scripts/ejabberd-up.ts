// CLI used by scripts/run.sh / scripts/stop.sh: runs a private ejabberd node
// (same config templates as the test harness) with mod_consult loaded.
//
//   tsx scripts/ejabberd-up.ts up   --dir .run/ejabberd [--domain localhost] [--port 5222]
//                                   [--http-port N] [--sidecar-port 50051] [--ebin erlang-shim/ebin]
//                                   [--config config/consult.example.json] [--no-shim]
//   tsx scripts/ejabberd-up.ts down --dir .run/ejabberd
//
// `up` starts the node detached, registers the demo accounts and exits;
// `down` stops the node recorded in <dir>/node.json.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { canConnect, EjabberdNode, freePort, type NodeOptions } from './ejabberd-node.js';

const PASSWORD = 'secret';
const DEFAULT_USERS = ['visitor1', 'shop_2', 'test01', 'test02'];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: '.run/ejabberd' },
    domain: { type: 'string', default: 'localhost' },
    port: { type: 'string', default: '5222' },
    'http-port': { type: 'string' },
    'sidecar-port': { type: 'string', default: '50051' },
    ebin: { type: 'string', default: 'erlang-shim/ebin' },
    config: { type: 'string' },
    'no-shim': { type: 'boolean', default: false },
  },
});
const dir = path.resolve(values.dir!);
const stateFile = path.join(dir, 'node.json');

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

async function up(): Promise<void> {
  await down(); // a node left over from an earlier run
  const c2sPort = Number(values.port);
  if (await canConnect(c2sPort)) {
    throw new Error(`127.0.0.1:${c2sPort} is already in use (a system ejabberd? try: systemctl stop ejabberd), or set XMPP_PORT`);
  }
  const domain = values.domain!;
  const opts: NodeOptions = {
    dir,
    domain,
    c2sPort,
    httpPort: values['http-port'] ? Number(values['http-port']) : await freePort(),
    distPort: await freePort(),
    nodeName: `consult_${crypto.randomBytes(3).toString('hex')}@localhost`,
    loglevel: 'info',
    shimOptions: values['no-shim'] ? undefined : {
      sidecar_host: '127.0.0.1',
      sidecar_port: Number(values['sidecar-port']),
      timeout: 500,
      failure_policy: 'reject',
    },
    ebinSources: values['no-shim'] ? [] : [path.resolve(values.ebin!)],
  };
  fs.rmSync(dir, { recursive: true, force: true }); // fresh spool each run
  const node = new EjabberdNode(opts);
  node.prepare();
  fs.writeFileSync(stateFile, JSON.stringify(opts, null, 2));
  await node.start();
  const users = demoUsers(values.config, domain);
  await Promise.all(users.map((u) => node.register(u, PASSWORD)));
  node.detach(); // keep running after this CLI exits (until `down`)
  console.log([
    `ejabberd ${opts.nodeName} is up (log: ${node.logFile})`,
    `  XMPP c2s: 127.0.0.1:${c2sPort}, domain ${domain}, plain TCP (no TLS: allow PLAIN/SCRAM without encryption in your client)`,
    `  HTTP API: http://127.0.0.1:${opts.httpPort}/api/<command>`,
    `  accounts (password "${PASSWORD}"): ${users.map((u) => `${u}@${domain}`).join(', ')}`,
    `  e.g. log in as visitor1@${domain} and message shop_2@${domain}; answer as test01@${domain}`,
  ].join('\n'));
}

async function down(): Promise<void> {
  if (!fs.existsSync(stateFile)) return;
  const opts = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as NodeOptions;
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
  (e: Error) => { console.error(e.message); process.exit(1); },
);
