// One opener per embedded store directory. PGlite takes no lock of its own: two sidecars on one `pglite:` directory
// would both open it, and what one acknowledged the other overwrites (the directory may not even open again). The
// lock is an abstract Unix socket named after the directory's real path: the kernel owns the name, so it dies with
// the process however that ends (SIGKILL included) and never stays behind like a PID file. Whoever connects to it
// is told the holder's PID. Abstract sockets are Linux's and per network namespace: two containers sharing the
// volume but not the network namespace are not kept apart (docs/state.md).
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import net from 'node:net';

/** Another process holds the directory. */
export class StoreLocked extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number | undefined,
  ) {
    super(
      `the store directory ${dir} is already open by another consult sidecar (${pid ? `pid ${pid}` : 'its pid did not answer'}); ` +
        'this one stops without touching it: stop the other first, or give each sidecar its own pglite: directory',
    );
  }
}

export interface DirLock {
  release(): void;
}

/** The socket name of a directory: its real path, hashed when too long for sun_path (108 bytes). */
export function lockName(dir: string): string {
  const real = realpathSync(dir);
  const name = `\0consult-pglite:${real}`;
  return Buffer.byteLength(name) <= 100 ? name : `\0consult-pglite:sha256:${createHash('sha256').update(real).digest('hex')}`;
}

/** Takes the directory (which must exist) for this process, or throws StoreLocked. Not on other systems than Linux. */
export async function lockDir(dir: string): Promise<DirLock> {
  if (process.platform !== 'linux') return { release: () => undefined };
  const name = lockName(dir);
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end(`${process.pid}\n`);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(name, () => resolve());
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    throw new StoreLocked(dir, await holderPid(name));
  }
  server.unref(); // the lock never keeps the process alive
  return { release: () => server.close() };
}

/** The PID the holder answers, within a second (a stopped process does not answer). */
function holderPid(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const socket = net.connect(name);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const pid = Number.parseInt(text, 10);
      resolve(Number.isFinite(pid) && pid > 0 ? pid : undefined);
    };
    const timer = setTimeout(done, 1000);
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      text += d;
    });
    socket.on('end', done);
    socket.on('error', done);
  });
}
