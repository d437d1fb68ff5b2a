// Sidecar entry point: `tsx src/main.ts --config config.json [--grpc-port N]`.
import { parseArgs } from 'node:util';
import { loadConfig } from './config.js';
import { Directory, seedStore } from './directory.js';
import { MemoryStore } from './memory-store.js';
import { ConsultRouter } from './router.js';
import { ShimLink, startGrpcServer, stanzaFilterHandlers, type Log } from './server.js';

const log: Log = (msg, fields = {}) => console.log(JSON.stringify({ time: new Date().toISOString(), msg, ...fields }));

async function main() {
  const { values } = parseArgs({
    options: { config: { type: 'string', default: 'config/consult.example.json' }, 'grpc-port': { type: 'string' }, 'grpc-host': { type: 'string' } },
  });
  const config = loadConfig(values.config!);
  const host = values['grpc-host'] ?? config.grpc.host;
  const port = values['grpc-port'] !== undefined ? Number(values['grpc-port']) : config.grpc.port;

  const store = new MemoryStore();
  await seedStore(store, config);
  const directory = new Directory(store);
  await directory.reload();
  const link = new ShimLink(log);
  const router = new ConsultRouter({ config, store, directory, send: (s) => link.send(s) });
  const { server, port: bound } = await startGrpcServer(stanzaFilterHandlers(router, link, log), host, port);
  log('sidecar listening', { grpc: `${host}:${bound}`, shops: directory.watchList().shops });

  const timer = setInterval(() => router.tick().catch((e) => log('timer failed', { err: String(e) })), config.timers.tickSec * 1000);
  const shutdown = (signal: string) => {
    log('shutting down', { signal });
    clearInterval(timer);
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
