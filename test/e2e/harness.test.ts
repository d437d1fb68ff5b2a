// Proves the e2e harness against a real, stock ejabberd (no mod_consult):
// private node start, user registration, two XMPP clients, a message, stop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startEjabberd } from '../support/ejabberd.js';
import { connectClient, marker, type TestClient } from '../support/xmpp.js';

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

    // waitFor never hands out the same stanza twice: asked for m1 or a later m3, it skips the m1 it gave out.
    await alice.send(`<message type='chat' to='bob@localhost' id='m3'><body>again</body></message>`);
    const next = await bob.waitFor((el) => el.is('message') && (el.attrs.id === 'm1' || el.attrs.id === 'm3'));
    assert.is(next.attrs.id, 'm3');

    // A wait that fails lists what did arrive (a predicate nothing matches: its deadline is the only outcome).
    const err = await bob.waitFor(() => false, 100).catch((e: Error) => e);
    assert.instance(err, Error);
    assert.match((err as Error).message, /#\d+ \(consumed\) .*hello bob/, 'and which were handed out');

    // What the checks that something did NOT arrive rely on. settle(): what the server had routed to a session
    // before the call has arrived when it resolves (alice's settle makes sure m4 was routed, bob's that it arrived).
    await alice.send(`<message type='chat' to='bob@localhost' id='m4'><body>four</body></message>`);
    await alice.settle();
    await bob.settle();
    assert.ok(
      bob.received.some((el) => el.attrs.id === 'm4'),
      'm4 in after the settle',
    );
    // marker(): what one session sent another before it has arrived when it resolves.
    await alice.send(`<message type='chat' to='bob@localhost' id='m5'><body>five</body></message>`);
    await marker(alice, bob);
    assert.ok(
      bob.received.some((el) => el.attrs.id === 'm5'),
      'm5 in after the marker',
    );
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
