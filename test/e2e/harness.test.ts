// Proves the e2e harness against a real, stock ejabberd (no mod_consult):
// private node start, user registration, two XMPP clients, a message, stop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startEjabberd } from '../support/ejabberd.js';
import { connectClient, type TestClient } from '../support/xmpp.js';

test('stock ejabberd: two users exchange a message', async () => {
  const ej = await startEjabberd({ withShim: false });
  const clients: TestClient[] = [];
  try {
    await Promise.all([ej.register('alice', 'pw-a'), ej.register('bob', 'pw-b')]);
    const service = `xmpp://127.0.0.1:${ej.c2sPort}`;
    const [alice, bob] = await Promise.all([
      connectClient({ service, domain: ej.domain, username: 'alice', password: 'pw-a' }),
      connectClient({ service, domain: ej.domain, username: 'bob', password: 'pw-b' }),
    ]);
    clients.push(alice, bob);
    assert.is(alice.bareJid, 'alice@localhost');

    await alice.send(`<message type='chat' to='bob@localhost' id='m1'><body>hello bob</body></message>`);
    const got = await bob.waitFor((el) => el.is('message') && el.attrs.id === 'm1');
    assert.is(got.getChildText('body'), 'hello bob');
    assert.is(got.attrs.from, alice.jid);
    assert.is(got.attrs.type, 'chat');

    // Stock ejabberd's codec drops unknown attributes (restoring them is the
    // shim's job); the message itself still arrives.
    await alice.send(
      `<message type='chat' to='bob@localhost' id='m2' realfrom='x' qchatid='4'><body id='X1' msgType='1'>hi</body></message>`,
    );
    const raw = await bob.waitFor((el) => el.is('message') && el.attrs.id === 'm2');
    assert.is(raw.getChildText('body'), 'hi');
    assert.is(raw.attrs.qchatid, undefined);

    // waitFor never hands out the same stanza twice.
    const err = await bob.waitFor((el) => el.is('message') && el.attrs.id === 'm1', 200).catch((e: Error) => e);
    assert.instance(err, Error);
    assert.match((err as Error).message, /hello bob/);
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await ej.stop();
  }
  if (process.env.KEEP_EJABBERD !== '1') assert.not.ok(fs.existsSync(ej.dir), 'temp dir removed');
});

test('start fails fast, with the log, when mod_consult cannot be loaded', async () => {
  const emptyEbin = fs.mkdtempSync(path.join(os.tmpdir(), 'empty-ebin-'));
  try {
    const err = await startEjabberd({ ebinDir: emptyEbin, shimOptions: { sidecar_port: 1 } }).catch((e: Error) => e);
    assert.instance(err, Error);
    assert.match((err as Error).message, /\[critical\].*mod_consult/);
  } finally {
    fs.rmSync(emptyEbin, { recursive: true, force: true });
  }
});

test.run();
