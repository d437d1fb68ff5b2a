// Sidecar entry point: `tsx src/main.ts --config config.json [--grpc-port N]`.
import { parseArgs } from 'node:util';
import { HealthImplementation } from 'grpc-health-check';
import { pino } from 'pino';
import { startAdminServer } from './admin/http.js';
import { loadConfig } from './config.js';
import { Directory, seedStore } from './directory.js';
import { InFlight } from './inflight.js';
import { Metrics } from './metrics.js';
import { ConsultRouter } from './router.js';
import { ShimLink, startGrpcServer, stanzaFilterHandlers, type Log } from './server.js';
import { openStore } from './sql-store.js';

// One JSON line per event on stdout (pino's default destination writes synchronously).
const logger = pino({ base: { service: 'consult-router' }, timestamp: pino.stdTimeFunctions.isoTime });
const log: Log = (msg, fields = {}) => (/failed|error/i.test(msg) ? logger.warn(fields, msg) : logger.info(fields, msg));

const DRAIN_MS = 5000;

async function main() {
  const { values } = parseArgs({
    options: { config: { type: 'string', default: 'config/consult.example.json' }, 'grpc-port': { type: 'string' }, 'grpc-host': { type: 'string' } },
  });
  const config = loadConfig(values.config!);
  const host = values['grpc-host'] ?? config.grpc.host;
  const port = values['grpc-port'] !== undefined ? Number(values['grpc-port']) : config.grpc.port;

  const store = await openStore(config.store);
  if (await seedStore(store, config)) log('store seeded from config', { shops: config.shops.length });
  const directory = new Directory(store);
  await directory.reload();
  const link = new ShimLink(log);
  const router = new ConsultRouter({ config, store, directory, send: (s) => link.send(s) });
  const metrics = new Metrics({ store, directory, link }, { defaults: true });
  const inflight = new InFlight();
  const health = new HealthImplementation({ '': 'SERVING', 'consult.v1.StanzaFilter': 'SERVING' });
  const handlers = stanzaFilterHandlers(router, link, log, { observe: (a, s) => metrics.observe(a, s), track: inflight.track });
  const { server, port: bound, nagleDisabled } = await startGrpcServer(handlers, host, port, (s) => health.addToServer(s));
  if (!nagleDisabled) log('could not set TCP_NODELAY on gRPC sockets (grpc-js internals changed): verdicts may be delayed');
  log('sidecar listening', { grpc: `${host}:${bound}`, store: config.store.replace(/\/\/[^@/]*@/, '//***@'), shops: directory.watchList().shops });

  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  if (config.admin.token) {
    admin = await startAdminServer({ store, directory, router, link, metrics, log, token: config.admin.token }, config.admin.host, config.admin.port);
    log('admin API listening', { admin: `http://${config.admin.host}:${admin.port}` });
  } else {
    log('admin API not started: set admin.token in the config to enable it (and /metrics)');
  }

  // tick() re-reads shops and agents: another sidecar's admin may have changed them, and our shims must hear of it.
  let watched = JSON.stringify(directory.watchList());
  const onTick = async () => {
    await router.tick();
    const now = JSON.stringify(directory.watchList());
    if (now !== watched) link.pushWatchList(directory.watchList());
    watched = now;
  };
  const timer = setInterval(() => void inflight.track(onTick()).catch((e) => log('timer failed', { err: String(e) })), config.timers.tickSec * 1000);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('shutting down', { signal, inFlight: inflight.size });
    // Last resort: never hang in shutdown.
    setTimeout(() => { log('shutdown timed out'); process.exit(1); }, DRAIN_MS + 5000).unref();
    clearInterval(timer);
    health.setStatus('', 'NOT_SERVING');
    health.setStatus('consult.v1.StanzaFilter', 'NOT_SERVING');
    await admin?.close();
    if (!(await inflight.drain(DRAIN_MS))) log('shutdown: decisions still pending after drain', { inFlight: inflight.size });
    link.endAll();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => { server.forceShutdown(); resolve(); }, 1000);
      server.tryShutdown(() => { clearTimeout(force); resolve(); });
    });
    await store.close().catch((e) => log('store close failed', { err: String(e) }));
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((e) => {
  logger.error({ err: String(e instanceof Error ? e.message : e) }, 'startup failed');
  process.exit(1);
});
