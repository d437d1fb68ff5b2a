// The real sidecar's /metrics listener (config `metrics`): served without an admin token and without the admin API,
// with consult_build_info and Node's process metrics; a second sidecar given the same port logs why it has no
// listener and goes on deciding.
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeConfig } from '../support/sidecar.js';
import { type SidecarChild, spawnSidecar } from '../support/sidecar-process.js';

const D = 'metrics.test';
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const config = (metricsPort: number, adminPort: number) =>
  writeConfig({
    // No admin.token: the admin API does not start.
    admin: { port: adminPort },
    metrics: { port: metricsPort },
    shops: [{ jid: `shop@${D}`, name: 'Metrics', agents: [{ jid: `ann@${D}`, maxSessions: 2 }] }],
  });

test('without an admin token /metrics is on its own listener; a second sidecar on that port says so and runs on', async () => {
  const [metricsPort, adminPort, grpc1, grpc2] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const sidecars: SidecarChild[] = [];
  try {
    const first = spawnSidecar(config(metricsPort, adminPort), grpc1, { killSignal: 'SIGTERM' });
    sidecars.push(first);
    await first.waitForLog('metrics listening');
    await first.waitForLog('admin API not started');
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.is(res.status, 200);
    const text = await res.text();
    assert.ok(text.includes(`consult_build_info{version="${VERSION}",node_version="${process.version}"} 1`), text.slice(0, 2000));
    assert.match(text, /^consult_shops_owned 1$/m, 'the gauges that read the desk');
    assert.match(text, /^process_cpu_seconds_total /m, "Node's process metrics");
    const admin = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then(
      () => 'answered',
      () => 'refused',
    );
    assert.is(admin, 'refused', 'no admin API without a token');

    // The same metrics port (another memory: store, so another set of shops): an error line, not an exit.
    const second = spawnSidecar(config(metricsPort, await freePort()), grpc2, { killSignal: 'SIGTERM' });
    sidecars.push(second);
    await second.waitForLog('metrics listener not started');
    await second.waitForLog('admin API not started'); // it went on past the listener
    assert.is(second.child.exitCode, null, 'still running');
  } finally {
    for (const s of sidecars) await s.kill();
  }
});

test.run();
