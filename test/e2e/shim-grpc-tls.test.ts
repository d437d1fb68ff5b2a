// TLS on the gRPC link, end to end: a throwaway CA, server and client certificates made with
// the openssl CLI; the sidecar's own startGrpcServer with grpcServerCredentials (grpc.tls) and
// stanzaFilterHandlers over a Desk; the shim's Erlang client (consult_grpc over
// consult_transport) driven by erlang-shim/test/consult_grpc_driver.erl, and once by a real
// ejabberd with mod_consult's sidecar_tls options.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, parseConfig, type TlsConfig } from '../../src/domain/config.js';
import { ShimAuth } from '../../src/grpc/auth.js';
import { ShimLink } from '../../src/grpc/link.js';
import { grpcServerCredentials, startGrpcServer, stanzaFilterHandlers } from '../../src/grpc/server.js';
import { recordingLog } from '../support/log.js';
import { Backends, deskWorld } from '../support/desk.js';
import { newShimCredential, startEjabberd } from '../support/ejabberd.js';
import { ErlDriver, waitFor } from '../support/erl-driver.js';
import { setUpSuite } from '../support/suite.js';

const shimDir = fileURLToPath(new URL('../../erlang-shim', import.meta.url));
const D = 'tls.test';
const SHOP = `shop@${D}`;
const NODE = 'ejd@tls-test';
const TOKEN = 'a-long-enough-tls-shim-token';
const STANZA = `<message type='consult' from='v1@${D}/w' to='${SHOP}'><body id='b1'>hi over TLS</body></message>`;

// ---- certificates -------------------------------------------------------------

interface Pki {
  dir: string;
  ca: string; // the CA that signed server and client
  otherCa: string; // a CA that signed nothing here
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** What README "Securing the link" tells an admin to run, in a temp dir (EC P-256 keys, valid 2 days). */
function makePki(): Pki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consult-tls-'));
  fs.chmodSync(dir, 0o755); // a real ejabberd reads them as user ejabberd
  const f = (name: string) => path.join(dir, name);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  fs.writeFileSync(
    f('ca.cnf'),
    '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = consult test CA\n' +
      '[v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n',
  );
  const leaf = (usage: string, san?: string) =>
    `basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = ${usage}\n${san ? `subjectAltName = ${san}\n` : ''}`;
  fs.writeFileSync(f('server.ext'), leaf('serverAuth', 'DNS:localhost, IP:127.0.0.1'));
  fs.writeFileSync(f('client.ext'), leaf('clientAuth'));
  for (const ca of ['ca', 'other-ca'])
    ossl(
      'req',
      '-x509',
      '-new',
      ...key,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
      '-days',
      '2',
      '-config',
      'ca.cnf',
      '-extensions',
      'v3_ca',
    );
  for (const [who, cn] of [
    ['server', 'localhost'],
    ['client', NODE],
  ]) {
    ossl('req', '-new', ...key, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${cn}`);
    ossl(
      'x509',
      '-req',
      '-in',
      `${who}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${who}.pem`,
      '-days',
      '2',
      '-extfile',
      `${who}.ext`,
    );
  }
  for (const name of fs.readdirSync(dir)) fs.chmodSync(f(name), 0o644);
  return {
    dir,
    ca: f('ca.pem'),
    otherCa: f('other-ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}

// ---- the sidecar ----------------------------------------------------------------

/** A sidecar's gRPC port with grpc.tls; what it logs is kept (hellos tell who got through). */
async function sidecar(tls: TlsConfig, shims = [{ node: NODE, token: TOKEN }]) {
  const config = parseConfig({
    grpc: { tls, shims },
    shops: [{ jid: SHOP, name: 'S', agents: [{ jid: `ann@${D}`, maxSessions: 5 }] }],
  });
  const w = await deskWorld({ backend: 'memory', backends: new Backends(), config, clock: Date.now() });
  const { log, lines } = recordingLog({ info: true });
  const handlers = stanzaFilterHandlers(
    { desk: w.desk, link: new ShimLink(log), watch: w.watch, log },
    {},
    new ShimAuth(config.grpc.shims),
  );
  const { server, port } = await startGrpcServer(handlers, '127.0.0.1', 0, undefined, 262144, grpcServerCredentials(config.grpc.tls));
  return {
    port,
    hellos: () => lines.filter((l) => l.msg === 'shim hello').map((l) => l.fields?.node),
    refusals: () => lines.filter((l) => l.msg.startsWith('shim stream refused')).length,
    stop: () => server.forceShutdown(),
  };
}

// ---- the Erlang client ------------------------------------------------------------

class Driver extends ErlDriver {
  /** consult_grpc started as mod_consult would for a sidecar at 127.0.0.1 (quick backoff for the test). */
  start(port: number, tls: Record<string, string> | false, token = TOKEN) {
    const tlsTerm =
      tls === false
        ? 'false'
        : `#{${Object.entries(tls)
            .map(([k, v]) => `${k} => "${v}"`)
            .join(', ')}}`;
    return this.run(
      `{start, #{host => "127.0.0.1", port => ${port}, hosts => [<<"${D}">>], node => <<"${NODE}">>, ` +
        `token => <<"${token}">>, backoff_min => 50, backoff_max => 200, tls => ${tlsTerm}}}`,
    );
  }

  filter() {
    return this.run(`{filter, <<"${D}">>, <<"${STANZA}">>, 2000}`);
  }
}

/** Waits for a condition; fails with what was awaited, what was seen last and the client's log since `from`. */
async function until(what: string, cond: () => boolean, driver: ErlDriver, from = 0, timeoutMs = 20_000): Promise<void> {
  await waitFor(what, cond, { timeoutMs, detail: () => `client log:\n${driver.stderr.slice(from).slice(-4000)}` });
}

// ---- tests ----------------------------------------------------------------------------

const ctx = { pki: undefined as unknown as Pki, driver: undefined as unknown as Driver };
const t = suite('gRPC link over TLS', ctx);

setUpSuite(t, async () => {
  execFileSync('make', ['-s', '-C', shimDir, 'all', 'test-beams'], { stdio: 'inherit' });
  ctx.pki = makePki();
  ctx.driver = new Driver();
});

t.after(() => {
  ctx.driver?.stop();
  if (ctx.pki) fs.rmSync(ctx.pki.dir, { recursive: true, force: true });
});

t('grpc.tls: a missing or unreadable file stops the start with the field named', ({ pki }) => {
  const tls = (o: object) => parseConfig({ grpc: { tls: o }, shops: [{ jid: SHOP, name: 'S', agents: [] }] }).grpc.tls;
  assert.throws(() => tls({ key: pki.serverKey }), /grpc\.tls\.cert is required/);
  assert.throws(
    () => tls({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca }),
    /grpc\.tls\.ca is not a known key; use one of cert, key, clientCa/,
  );
  assert.throws(() => tls([]), /grpc\.tls must be an object/);
  assert.is(parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [] }] }).grpc.tls, undefined, 'no tls: h2c as before');
  const missing = path.join(pki.dir, 'nope.pem');
  const cases: [TlsConfig, RegExp][] = [
    [{ cert: missing, key: pki.serverKey }, /grpc\.tls\.cert: cannot read .*nope\.pem/],
    [{ cert: pki.serverCert, key: missing }, /grpc\.tls\.key: cannot read .*nope\.pem/],
    [{ cert: pki.serverCert, key: pki.serverKey, clientCa: missing }, /grpc\.tls\.clientCa: cannot read .*nope\.pem/],
    [{ cert: pki.serverCert, key: pki.clientKey }, /grpc\.tls\.cert and grpc\.tls\.key do not load/],
    [{ cert: path.join(pki.dir, 'ca.cnf'), key: pki.serverKey }, /grpc\.tls\.cert and grpc\.tls\.key do not load/],
  ];
  for (const [config, message] of cases) {
    const e = (() => {
      try {
        grpcServerCredentials(config);
      } catch (err) {
        return err;
      }
    })();
    assert.instance(e, ConfigError, String(message));
    assert.match((e as Error).message, message);
  }
});

t('a verdict comes back over TLS (certificate checked by IP address and by name), and the token still applies', async ({ pki, driver }) => {
  const s = await sidecar({ cert: pki.serverCert, key: pki.serverKey });
  try {
    await driver.start(s.port, { cafile: pki.ca, server_name: '127.0.0.1' });
    await driver.waitStatus('connected', true);
    const verdict = await driver.filter();
    assert.is(verdict[0], 'ok', JSON.stringify(verdict));
    assert.ok(['pass', 'rewrite', 'drop', 'reject'].includes(verdict[1].action));
    const status = await driver.run('status');
    assert.is(status.tls, true);
    assert.equal(s.hellos(), [NODE]);
    await driver.run('stop');

    // The name in the certificate, and a name it does not carry.
    await driver.start(s.port, { cafile: pki.ca, server_name: 'localhost' });
    await driver.waitStatus('connected', true);
    assert.is((await driver.filter())[0], 'ok');
    await driver.run('stop');
    const warned = driver.stderr.length;
    await driver.start(s.port, { cafile: pki.ca, server_name: 'sidecar.example.net' });
    // The first failed handshake is logged, and the next attempt is scheduled: it failed, nothing is connected.
    await driver.waitLog('the failed handshake logged', /hostname_check_failed/, warned);
    await driver.waitStatus('reconnect_attempts', { atLeast: 1 });
    assert.equal(await driver.filter(), ['error', 'unavailable']);
    assert.match(driver.stderr.slice(warned), /hostname_check_failed/);
    assert.is((await driver.run('status')).connected, false);
    assert.equal(s.hellos(), [NODE, NODE], 'no hello under a name the certificate does not carry');
    await driver.run('stop');

    // A wrong token over a good TLS connection: refused by the sidecar as without TLS.
    const refusedBefore = s.refusals();
    const logged = driver.stderr.length;
    await driver.start(s.port, { cafile: pki.ca, server_name: '127.0.0.1' }, 'a-wrong-token-of-some-length');
    await until('the sidecar refused the stream', () => s.refusals() > refusedBefore, driver, logged);
    assert.equal(await driver.filter(), ['error', 'unavailable']);
    await driver.waitLog('the shim says it was refused', /refused this shim \(grpc-status 16/, logged);
    assert.equal(s.hellos(), [NODE, NODE], 'no hello got through with the wrong token');
    await driver.run('stop');
  } finally {
    s.stop();
  }
});

t(
  'an untrusted server certificate (another CA): a clean failed connect, retried with backoff, nothing crashes',
  async ({ pki, driver }) => {
    const s = await sidecar({ cert: pki.serverCert, key: pki.serverKey });
    try {
      const logged = driver.stderr.length;
      await driver.start(s.port, { cafile: pki.otherCa, server_name: '127.0.0.1' });
      await driver.waitStatus('reconnect_attempts', { atLeast: 4 });
      const status = await driver.run('status');
      assert.is(status.connected, false);
      assert.is(status.running, true);
      assert.ok(await driver.run('alive'), 'the connection process is still there');
      assert.equal(await driver.filter(), ['error', 'unavailable'], 'callers get unavailable at once');
      const log = driver.stderr.slice(logged);
      assert.match(log, /unavailable over TLS .*unknown_ca.*check sidecar_cafile/s);
      assert.is(log.match(/unavailable over TLS/g)?.length, 1, 'one warning for the series, not one per retry');
      assert.equal(s.hellos(), [], 'nothing reached the sidecar');
      await driver.run('stop');
    } finally {
      s.stop();
    }
  },
);

t(
  'mutual TLS: a shim without a client certificate is refused, one with a certificate the CA signed gets its verdict',
  async ({ pki, driver }) => {
    const s = await sidecar({ cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca });
    try {
      const logged = driver.stderr.length;
      await driver.start(s.port, { cafile: pki.ca, server_name: '127.0.0.1' });
      // TLS 1.3: the client's handshake completes, then the sidecar closes. Depending on timing the client sees the
      // alert, the session closed before ALPN is read, or its first write failing; each is logged and retried.
      const refused = () =>
        driver.stderr.slice(logged).match(/certificate_required|closed the TLS session at once|lost \(\{send_failed,closed\}\)/g)?.length ??
        0;
      await until('refused', () => refused() >= 1, driver, logged);
      // No verdict: unavailable while disconnected, or the request fails with the connection it went out on.
      assert.is((await driver.filter())[0], 'error');
      assert.ok(await driver.run('alive'));
      assert.equal(s.hellos(), [], 'no stream without a client certificate');
      await driver.run('stop');

      await driver.start(s.port, { cafile: pki.ca, server_name: '127.0.0.1', certfile: pki.clientCert, keyfile: pki.clientKey });
      await driver.waitStatus('connected', true);
      assert.is((await driver.filter())[0], 'ok');
      assert.equal(s.hellos(), [NODE]);
      await driver.run('stop');

      // The client certificate does not replace the token.
      const refusedBefore = s.refusals();
      await driver.start(
        s.port,
        { cafile: pki.ca, server_name: '127.0.0.1', certfile: pki.clientCert, keyfile: pki.clientKey },
        'a-wrong-token-of-some-length',
      );
      await until('the sidecar refused the stream', () => s.refusals() > refusedBefore, driver);
      assert.equal(await driver.filter(), ['error', 'unavailable']);
      await driver.run('stop');
    } finally {
      s.stop();
    }
  },
);

t(
  'a real ejabberd: mod_consult with sidecar_tls, sidecar_cafile and a client certificate reaches a mutual-TLS sidecar',
  async ({ pki }) => {
    const credential = newShimCredential();
    const s = await sidecar({ cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca }, [credential]);
    const ejabberd = await startEjabberd({
      credential,
      shimOptions: {
        sidecar_host: 'localhost',
        sidecar_port: s.port,
        sidecar_tls: true,
        sidecar_cafile: pki.ca,
        sidecar_certfile: pki.clientCert,
        sidecar_keyfile: pki.clientKey,
      },
    });
    try {
      await waitFor('the node said hello over mutual TLS', () => s.hellos().includes(credential.node), {
        detail: () => ejabberd.logTail(50),
      });
      assert.match(ejabberd.logTail(200), new RegExp(`connected to sidecar localhost:${s.port} over TLS`));
    } finally {
      await ejabberd.stop();
      s.stop();
    }
  },
);

t.run();
