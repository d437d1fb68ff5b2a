// Sidecar entry point: `tsx src/main.ts --config config.json [--grpc-port N]`.
import { parseArgs } from 'node:util';
import { loadConfig } from './config.js';
import { ConsultRouter } from './router.js';
import { startGrpcServer, stanzaFilterHandlers, type Log } from './server.js';
import { CachedSessionStore, MemorySessionStore } from './sessions.js';

const log: Log = (msg, fields = {}) => console.log(JSON.stringify({ time: new Date().toISOString(), msg, ...fields }));

async function main() {
  const { values } = parseArgs({
    options: { config: { type: 'string', default: 'config/consult.example.json' }, 'grpc-port': { type: 'string' }, 'grpc-host': { type: 'string' } },
  });
  const config = loadConfig(values.config!);
  const host = values['grpc-host'] ?? config.grpc.host;
  const port = values['grpc-port'] !== undefined ? Number(values['grpc-port']) : config.grpc.port;

  const router = new ConsultRouter(config, new CachedSessionStore(new MemorySessionStore()));
  const handlers = stanzaFilterHandlers(router, (e) => log('session event', { kind: e.kind, jid: e.jid, show: e.show }), log);
  const { server, port: bound } = await startGrpcServer(handlers, host, port);
  log('sidecar listening', { grpc: `${host}:${bound}`, shops: config.shops.map((s) => s.jid) });

  const shutdown = (signal: string) => {
    log('shutting down', { signal });
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((e) => {
  console.error(String(e instanceof Error ? e.message : e));
  process.exit(1);
});
