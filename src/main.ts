#!/usr/bin/env node
// Sidecar entry point: `node dist/main.js --config config.json [--grpc-port N]` (built by `npm run build`;
// `tsx src/main.ts …` runs the sources).
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { HealthImplementation } from 'grpc-health-check';
import { pino } from 'pino';
import { startAdminServer } from './admin/http.js';
import { loadConfig } from './ops/config-file.js';
import { Desk } from './desk/desk.js';
import { Directory, seedStore } from './desk/directory.js';
import { ShimAuth } from './grpc/auth.js';
import { ShimLink } from './grpc/link.js';
import { grpcServerCredentials, startGrpcServer, stanzaFilterHandlers } from './grpc/server.js';
import { InFlight } from './desk/inflight.js';
import { LeaseLost } from './storage/sql-journal.js';
import { pinoLog } from './domain/log.js';
import { Metrics } from './admin/metrics.js';
import { Ownership } from './cluster/ownership.js';
import { Presence } from './desk/presence.js';
import { openStores } from './storage/open.js';
import { WatchList } from './cluster/watch-list.js';
import { askBot } from './bot/webhook.js';

// One JSON line per event on stdout (pino's default destination writes synchronously).
const logger = pino({ base: { service: 'consult-router' }, timestamp: pino.stdTimeFunctions.isoTime });
const log = pinoLog(logger);

const DRAIN_MS = 5000;

const USAGE = `usage: consult-router [--config FILE] [--grpc-host HOST] [--grpc-port PORT]

  --config FILE      sidecar config (JSON; see docs/configuration.md)  [config/consult.example.json]
  --grpc-host HOST   listen address for gRPC, overrides grpc.host in the config
  --grpc-port PORT   listen port for gRPC, overrides grpc.port in the config
  -h, --help         print this help and exit

Logs are JSON lines on stdout. SIGTERM, SIGINT and SIGHUP drain in-flight decisions and exit 0
(SIGHUP does not reload: restart the sidecar to read a changed config).`;

function parseCommandLine() {
  try {
    return parseArgs({
      options: {
        config: { type: 'string', default: 'config/consult.example.json' },
        'grpc-port': { type: 'string' },
        'grpc-host': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    console.error(`consult-router: ${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

async function main() {
  const values = parseCommandLine();
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const config = loadConfig(values.config!);
  const host = values['grpc-host'] ?? config.grpc.host;
  const port = values['grpc-port'] !== undefined ? Number(values['grpc-port']) : config.grpc.port;
  const credentials = grpcServerCredentials(config.grpc.tls); // the TLS files are read now: a bad path stops the start

  // The stable id spreads shops over sidecars; the holder (this process) fences its writes.
  const sidecar = config.sidecarId ?? `${hostname()}:${port}`;
  const holder = `${sidecar}#${randomUUID().slice(0, 8)}`;
  const { store, journal: journalStore, leases, archive, failed, freeBytes } = await openStores(config.store, { holder, sidecar });
  // A store that failed beyond repair (e.g. the disk is full): say why and end, so that the supervisor restarts us;
  // the refusals of the decisions it took back get 200 ms to leave.
  void failed?.then((e) => {
    log.error(`${e.message}; the sidecar exits so that its supervisor restarts it`, { err: e.cause });
    setTimeout(() => process.exit(1), 200);
  });
  if (await seedStore(store, config)) log.info('store seeded from config', { shops: config.shops.length });
  const directory = new Directory(store);
  await directory.reload();
  const link = new ShimLink(log);
  // Agents of a node that is gone are offline: their sessions move on a later tick (after offlineGraceSec).
  const presence = new Presence(store, { nodeGraceMs: config.timers.nodeGraceSec * 1000, log });
  await presence.load();
  let metrics: Metrics | undefined;
  let ownership: Ownership | undefined;
  const desk = new Desk({
    config,
    directory,
    presence,
    journalStore,
    archive,
    askBot: (bot, req) => askBot(bot, req, config.maxBotAnswerBytes),
    link,
    log,
    onBatch: (b) => metrics?.batch(b),
    onJournalError: (e) => {
      log.error('journal write failed: its decisions were taken back and refused', { err: e });
      if (e instanceof LeaseLost) ownership?.refused(e.shops);
    },
  });
  const watch = new WatchList({ directory, shops: desk.shops, sidecar, push: (w) => link.pushWatchList(w) });
  ownership = new Ownership({ leases, desk, directory, watch, log });
  // Another sidecar released shops or joined: a round now, not up to a second later (best effort; rounds go on).
  await leases
    .watch?.(() => ownership?.soon())
    .catch((e) => log.warn('lease changes are not announced to this sidecar: it polls', { err: e }));
  metrics = new Metrics({ desk, directory, link, storeFreeBytes: freeBytes }, { defaults: true });
  const inflight = new InFlight();
  const health = new HealthImplementation({ '': 'SERVING', 'consult.v1.StanzaFilter': 'SERVING' });
  const auth = new ShimAuth(config.grpc.shims);
  if (!auth.required)
    logger.warn(
      'the gRPC link is not authenticated: any local process may act as a shim; set grpc.shims (docs/configuration.md, "Securing the link")',
    );
  // The shops that are free now are taken before the port opens, so a shim that connects is told them in its first
  // watch list; those another sidecar still holds follow below, with the port open.
  await ownership.round();
  const handlers = stanzaFilterHandlers(
    { desk, link, watch, log },
    { observe: (a, s) => metrics!.observe(a, s), track: inflight.track },
    auth,
    { maxStreamsPerNode: config.grpc.maxStreamsPerNode },
  );
  const {
    server,
    port: bound,
    nagleDisabled,
  } = await startGrpcServer(handlers, host, port, (s) => health.addToServer(s), config.maxStanzaBytes, credentials);
  if (!nagleDisabled) log.warn('could not set TCP_NODELAY on gRPC sockets (grpc-js internals changed): verdicts may be delayed');
  log.info('sidecar listening', {
    grpc: `${host}:${bound}`,
    tls: config.grpc.tls ? (config.grpc.tls.clientCa ? 'mutual (client certificates required)' : 'on') : 'off',
    store: config.store.replace(/\/\/[^@/]*@/, '//***@'),
    shops: directory.watchList().shops,
  });
  // The rest of the shops that belong here: handed over by their owner within a round, a crashed predecessor's when
  // its leases expire. The shims are linked meanwhile and told the moment each shop is taken.
  await ownership.settle(2 * leases.ttlMs, leases.ttlMs / 5);
  log.info('deciding shops', { sidecar, owned: desk.shops.owned().length, of: directory.allShops().length });

  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  if (config.admin.token) {
    admin = await startAdminServer(
      {
        store,
        directory,
        desk,
        presence,
        watch,
        ownership,
        metrics,
        log,
        token: config.admin.token,
        defaultLimits: config.limits,
        authFailures: { max: config.admin.maxAuthFailures, windowMs: config.admin.authWindowSec * 1000 },
      },
      config.admin.host,
      config.admin.port,
    );
    log.info('admin API listening', { admin: `http://${config.admin.host}:${admin.port}` });
  } else {
    log.warn('admin API not started: set admin.token in the config to enable it (and /metrics)');
  }

  // Shops, agents and statuses are re-read on every tick: a change made through another sidecar must reach us.
  const onTick = async () => {
    await directory.reload();
    await presence.loadStatuses();
    desk.shops.refresh();
    await desk.tick();
    watch.publishIfChanged();
  };
  const every = (ms: number, what: string, fn: () => Promise<void>) => {
    let busy = false; // a slow run is not stacked on itself
    return setInterval(() => {
      if (busy) return;
      busy = true;
      void inflight
        .track(fn())
        .catch((e) => log.error(`${what} failed`, { err: e }))
        .finally(() => {
          busy = false;
        });
    }, ms);
  };
  const timer = every(config.timers.tickSec * 1000, 'timer', onTick);
  // Leases are renewed well within their period; the embedded store's sole owner only follows the directory.
  const leaseTimer = every(Math.min(leases.ttlMs / 5, config.timers.tickSec * 1000), 'lease round', async () => {
    await ownership.round();
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal, inFlight: inflight.size });
    // Last resort: never hang in shutdown.
    setTimeout(() => {
      log.error('shutdown timed out');
      process.exit(1);
    }, DRAIN_MS + 5000).unref();
    clearInterval(timer);
    clearInterval(leaseTimer);
    presence.close();
    health.setStatus('', 'NOT_SERVING');
    health.setStatus('consult.v1.StanzaFilter', 'NOT_SERVING');
    await admin?.close();
    // GOAWAY first: the shims send new stanzas elsewhere (a new connection, another sidecar) while the decisions
    // this sidecar accepted are answered; then the streams end.
    const closed = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    if (!(await inflight.drain(DRAIN_MS))) log.warn('shutdown: decisions still pending after drain', { inFlight: inflight.size });
    await desk.journal.flushed();
    // Shops finished and their leases released: a standby takes them within a second, without waiting for expiry.
    await ownership.handOverAll().catch((e) => log.warn('shutdown: leases not released; they expire instead', { err: e }));
    link.endAll();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
    server.forceShutdown();
    await store.close().catch((e) => log.warn('store close failed', { err: e }));
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // A closed terminal or a reload by habit must not kill the sidecar without its drain: SIGHUP stops it like SIGTERM.
  process.on('SIGHUP', () => void shutdown('SIGHUP'));
}

main().catch((e) => {
  logger.error({ err: e }, `startup failed: ${(e as Error)?.message ?? e}`);
  process.exit(1);
});
