#!/usr/bin/env node
// Sidecar entry point: `node dist/main.js --config config.json [--grpc-port N]` (built by `npm run build`;
// `tsx src/main.ts …` runs the sources). Settings: command line > CONSULT_* environment > config file > defaults.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { HealthImplementation } from 'grpc-health-check';
import { pino } from 'pino';
import { leaseOwners, startAdminServer } from './admin/http.js';
import { loadConfig, readAdminTokens } from './ops/config-file.js';
import { packageVersion } from './ops/version.js';
import { ConfigError, outsideOverrides, withSystemJid } from './domain/config.js';
import { planImport, type ShopView } from './admin/import.js';
import { Desk } from './desk/desk.js';
import { Directory, seedStore } from './desk/directory.js';
import { ShimAuth } from './grpc/auth.js';
import { ShimLink } from './grpc/link.js';
import { grpcServerCredentials, startGrpcServer, stanzaFilterHandlers } from './grpc/server.js';
import { InFlight } from './desk/inflight.js';
import { LeaseLost } from './storage/sql-journal.js';
import { pinoLog } from './domain/log.js';
import { Metrics } from './admin/metrics.js';
import { startMetricsServer } from './admin/metrics-server.js';
import { Ownership } from './cluster/ownership.js';
import { untilReached } from './cluster/reachability.js';
import { Presence } from './desk/presence.js';
import { openStores } from './storage/open.js';
import { WatchList } from './cluster/watch-list.js';
import { askBot } from './bot/webhook.js';
import { postEvent } from './bot/event-hook.js';

// One JSON line per event on stdout (pino's default destination writes synchronously).
const logger = pino({ base: { service: 'consult-router' }, timestamp: pino.stdTimeFunctions.isoTime });
const log = pinoLog(logger);

const DRAIN_MS = 5000;
/** How long a sidecar that starts waits for every ejabberd node to connect before it takes shops back (twice the shim's longest reconnect backoff). */
const SHIMS_WAIT_MS = 10_000;

const DEFAULT_CONFIG = 'config/consult.example.json';
const USAGE = `usage: consult-router [--config FILE] [options]

  --config FILE        sidecar config, JSON or YAML (.yaml, .yml); see docs/configuration.md
                       [$CONSULT_CONFIG, else ${DEFAULT_CONFIG}]
  --grpc-host HOST     gRPC listen address          (grpc.host;  env CONSULT_GRPC_HOST)
  --grpc-port PORT     gRPC listen port             (grpc.port;  env CONSULT_GRPC_PORT)
  --admin-host HOST    admin API listen address     (admin.host; env CONSULT_ADMIN_HOST)
  --admin-port PORT    admin API listen port        (admin.port; env CONSULT_ADMIN_PORT)
  --store URL          memory:, pglite:DIR or postgres://…  (store; env CONSULT_STORE)
  --log-level LEVEL    fatal, error, warn, info, debug, trace or silent  (logLevel; env CONSULT_LOG_LEVEL)
  --sidecar-id ID      this sidecar's stable id     (sidecarId; env CONSULT_SIDECAR_ID)
  -h, --help           print this help and exit
  --version            print the version and exit

A flag wins over its environment variable, which wins over the config file. The admin token comes
from the config (admin.token) or CONSULT_ADMIN_TOKEN, never from the command line. A wrong setting or
argument stops the start with one line naming it, exit code 2.

Logs are JSON lines on stdout. SIGTERM, SIGINT and SIGHUP drain in-flight decisions and exit 0
(SIGHUP does not reload: restart the sidecar to read a changed config).`;

function parseCommandLine() {
  try {
    return parseArgs({
      options: {
        config: { type: 'string' },
        'grpc-port': { type: 'string' },
        'grpc-host': { type: 'string' },
        'admin-port': { type: 'string' },
        'admin-host': { type: 'string' },
        store: { type: 'string' },
        'log-level': { type: 'string' },
        'sidecar-id': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    }).values;
  } catch (e) {
    console.error(`consult-router: ${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

/** The config file, the CONSULT_* environment and the flags, checked together. */
function readSettings(values: ReturnType<typeof parseCommandLine>) {
  const overrides = outsideOverrides(process.env, values);
  if (values.config !== undefined) return loadConfig(values.config, overrides, '--config');
  if (process.env.CONSULT_CONFIG) return loadConfig(process.env.CONSULT_CONFIG, overrides, 'CONSULT_CONFIG');
  return loadConfig(DEFAULT_CONFIG, overrides);
}

async function main() {
  const values = parseCommandLine();
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (values.version) {
    console.log(packageVersion());
    process.exit(0);
  }
  let config = readSettings(values);
  logger.level = config.logLevel;
  const { host, port } = config.grpc;
  const credentials = grpcServerCredentials(config.grpc.tls); // the TLS files are read now: a bad path stops the start
  const adminTokens = readAdminTokens(config.admin.tokens); // token files too

  // The stable id spreads shops over sidecars; the holder (this process) fences its writes.
  const sidecar = config.sidecarId ?? `${hostname()}:${port}`;
  const holder = `${sidecar}#${randomUUID().slice(0, 8)}`;
  const {
    store,
    journal: journalStore,
    leases,
    archive,
    audit,
    failed,
    freeBytes,
  } = await openStores(config.store, { holder, sidecar, ready: false }, { postgres: { ...config.postgres, log } });
  // A store that failed beyond repair (e.g. the disk is full): say why and end, so that the supervisor restarts us;
  // the refusals of the decisions it took back get 200 ms to leave.
  void failed?.then((e) => {
    log.error(`${e.message}; the sidecar exits so that its supervisor restarts it`, { err: e.cause });
    setTimeout(() => process.exit(1), 200);
  });
  const seeded = await seedStore(store, config);
  if (seeded) log.info('store seeded from config', { shops: config.shops.length });
  const directory = new Directory(store);
  await directory.reload();
  if (!seeded) warnIfConfigDiffers(config, directory);
  config = withSystemJid(
    config,
    directory.allShops().map((s) => s.jid),
  );
  const link = new ShimLink(log);
  // Agents of a node that is gone are offline: their sessions move on a later tick (after offlineGraceSec).
  const presence = new Presence(store, { nodeGraceMs: config.timers.nodeGraceSec * 1000, log });
  await presence.load();
  const metrics = new Metrics({ defaults: true });
  let ownership: Ownership | undefined;
  const desk = new Desk({
    config,
    directory,
    presence,
    journalStore,
    archive,
    askBot: (bot, req) => askBot(bot, req, config.maxBotAnswerBytes, (r) => metrics.bot.request(r)),
    link,
    postEvent,
    eventMetrics: metrics.events,
    eraser: link,
    askPresence: (node) => {
      const streams = link.reportPresence(node);
      if (streams > 0) log.info('asked an ejabberd node to report its agents again', { node, streams });
    },
    log,
    metrics: metrics.sessions,
    onBatch: (b) => metrics.batch(b),
    onJournalError: (e) => {
      log.error('journal write failed: its decisions were taken back and refused', { err: e });
      if (e instanceof LeaseLost) ownership?.refused(e.shops);
    },
  });
  const watch = new WatchList({
    directory,
    shops: desk.shops,
    sidecar,
    epochOf: (shop) => ownership?.epochOf(shop),
    push: (w) => link.pushWatchList(w),
  });
  ownership = new Ownership({ leases, desk, directory, watch, log });
  // Another sidecar released shops or joined: a round now, not up to a second later (best effort; rounds go on).
  await leases
    .watch?.(() => ownership?.soon())
    .catch((e) => log.warn('lease changes are not announced to this sidecar yet: it polls, and keeps trying to listen', { err: e }));
  metrics.watch({ desk, directory, link, storeFreeBytes: freeBytes });
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
    { observe: (a, s) => metrics.observe(a, s), track: inflight.track },
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
  // Shops are handed back from a live standby only once the shims can send them here (a sole owner, whose leases never end, has no standby).
  if (Number.isFinite(leases.ttlMs))
    void untilReached(() => link.reachedByAll(), SHIMS_WAIT_MS).then((reached) => {
      if (reached) log.info('every ejabberd node is connected: this sidecar takes its share of the shops', { sidecar });
      else
        log.warn('not every ejabberd node connected in time: this sidecar takes its share of the shops anyway', {
          awaited: link.awaitedNodes(),
        });
      leases.markReady();
      ownership?.soon();
    });

  // /metrics on its own port, token or not. A port taken (a second sidecar on the host with the default) is logged, not
  // fatal: deciding chats matters more than being scraped, and the admin API (if it runs) serves /metrics as well.
  const metricsServer = await startMetricsServer(metrics.registry, config.metrics.host, config.metrics.port).then(
    (m) => {
      log.info('metrics listening', { metrics: `http://${config.metrics.host}:${m.port}/metrics` });
      return m;
    },
    (e: Error) => {
      log.error('metrics listener not started: set metrics.port to a free port', {
        metrics: `${config.metrics.host}:${config.metrics.port}`,
        err: e,
      });
      return undefined;
    },
  );

  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  if (adminTokens.length) {
    admin = await startAdminServer(
      {
        store,
        directory,
        desk,
        presence,
        watch,
        ownership,
        owners: leaseOwners(leases),
        metrics,
        log,
        tokens: adminTokens,
        audit,
        auditRetentionMs: config.admin.auditRetentionDays * 86400_000,
        defaultLimits: config.limits,
        authFailures: { max: config.admin.maxAuthFailures, windowMs: config.admin.authWindowSec * 1000 },
      },
      config.admin.host,
      config.admin.port,
    );
    log.info('admin API listening', {
      admin: `http://${config.admin.host}:${admin.port}`,
      tokens: adminTokens.map((t) => `${t.name} (${t.role})`), // names and roles, never the secrets
    });
  } else {
    log.warn('admin API not started: set admin.token or admin.tokens in the config to enable it');
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
  ownership.start(Math.min(leases.ttlMs / 5, config.timers.tickSec * 1000));

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
    presence.close();
    desk.sender.close(); // an event under way is sent again by the next start (the same id)
    health.setStatus('', 'NOT_SERVING');
    health.setStatus('consult.v1.StanzaFilter', 'NOT_SERVING');
    await admin?.close();
    await metricsServer?.close();
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

/** The store already had shops, so the config's were not applied: say so once when they differ. */
function warnIfConfigDiffers(config: Parameters<typeof planImport>[0], directory: Directory): void {
  if (config.shops.length === 0) return;
  const current: ShopView[] = directory
    .allShops()
    .map((s) => ({ ...s, agents: directory.membersOf(s.jid).map((m) => ({ jid: m.agent, maxSessions: m.maxSessions })) }));
  const changes = planImport(config, current).length;
  if (changes > 0)
    log.warn(
      `the store already has shops, and they win over the config's (${changes} difference${changes > 1 ? 's' : ''}): \`consultctl import <config>\` applies a config to the store`,
      { differences: changes },
    );
}

main().catch((e) => {
  if (e instanceof ConfigError) {
    // One line naming the field, flag or variable; 2: the same start fails again until the setting is fixed.
    console.error(`consult-router: ${e.message}`);
    process.exit(2);
  }
  logger.error({ err: e }, `startup failed: ${(e as Error)?.message ?? e}`);
  process.exit(1);
});
