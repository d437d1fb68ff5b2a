// A FilterStream's bound on what it owes: verdicts wait for the journal, and a stream that owes
// MAX_OWED_PER_STREAM of them has its next stanzas refused at once with resource-constraint
// rather than queued; every owed verdict still arrives once the journal writes.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/domain/config.js';
import type { JournalStore, ShopRecord, SnapshotWrite } from '../../../src/desk/journal.js';
import { Action, Hook, StanzaFilterClient, type SidecarMessage, type Verdict } from '../../../src/gen/consult/v1/filter.js';
import { ShimLink } from '../../../src/grpc/link.js';
import { MAX_OWED_PER_STREAM, startGrpcServer, stanzaFilterHandlers } from '../../../src/grpc/server.js';
import { silent } from '../../../src/domain/log.js';
import { parseElement } from '../../../src/xmpp/xml.js';
import { Backends, deskWorld } from '../../support/desk.js';

const D = 'owed.test';
const SHOP = `shop@${D}`;

/** A journal store whose writes wait until release(); afterwards they go straight through. */
class HeldJournal implements JournalStore {
  private held: (() => void)[] | undefined = [];
  constructor(private readonly inner: JournalStore) {}

  append(records: ShopRecord[], snapshots: SnapshotWrite[]): Promise<void> {
    if (!this.held) return this.inner.append(records, snapshots);
    return new Promise((resolve, reject) => this.held!.push(() => void this.inner.append(records, snapshots).then(resolve, reject)));
  }
  load(shop: string) {
    return this.inner.load(shop);
  }
  forget(shop: string) {
    return this.inner.forget(shop);
  }
  /** Writes held so far (the journal has one in flight at a time). */
  get waiting(): number {
    return this.held?.length ?? 0;
  }
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const f of held) f();
  }
}

const until = async (what: string, ok: () => boolean, ms = 60_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const stanza = (i: number) =>
  Buffer.from(`<message type='consult' from='v${i % 50}@${D}/w' to='${SHOP}'><body id='b${i}'>hi</body></message>`);
const relayedTo = (v: Verdict) =>
  v.action === Action.ACTION_REWRITE ? parseElement(Buffer.from(v.stanza).toString()).attrs.to : undefined;
const refusal = (v: Verdict) => (v.action === Action.ACTION_REJECT ? `${v.error!.condition}/${v.error!.type}` : undefined);

test(`a stream owing ${MAX_OWED_PER_STREAM} verdicts: the next stanzas get resource-constraint at once; every owed verdict arrives once durable`, async () => {
  const config = parseConfig({ shops: [{ jid: SHOP, name: 'S', agents: [{ jid: `ann@${D}`, maxSessions: 50, status: 'always-on' }] }] });
  let journal: HeldJournal | undefined;
  const w = await deskWorld({
    backend: 'memory',
    backends: new Backends(),
    config,
    clock: Date.now(),
    journal: (inner) => (journal = new HeldJournal(inner)),
  });
  assert.ok(config.maxPendingDecisions > MAX_OWED_PER_STREAM, 'the desk itself is not overloaded by what one stream owes');
  const handlers = stanzaFilterHandlers({ desk: w.desk, link: new ShimLink(silent), watch: w.watch, log: silent });
  const { server, port } = await startGrpcServer(handlers, '127.0.0.1', 0);
  const client = new StanzaFilterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const call = client.filterStream();
    const verdicts: Verdict[] = [];
    call.on('data', (m: SidecarMessage) => {
      if (m.verdict) verdicts.push(m.verdict);
    });
    call.on('error', () => undefined);
    call.write({ hello: { node: 'ejabberd@one', hosts: [D], shimVersion: 't', clusterNodes: [], features: [] } });
    const send = (i: number) =>
      call.write({ filter: { seq: String(i), hook: Hook.HOOK_FILTER_PACKET, host: D, stanza: stanza(i), deadlineMs: '0' } });
    for (let i = 0; i <= MAX_OWED_PER_STREAM; i++) send(i);

    // Nothing is durable yet, so nothing decided is answered: the first verdict is the refusal of the one past the bound.
    await until('the refusal', () => verdicts.length > 0);
    assert.equal(
      verdicts.map((v) => [v.seq, refusal(v)]),
      [[String(MAX_OWED_PER_STREAM), 'resource-constraint/wait']],
    );
    assert.match(verdicts[0].error!.text, 'overloaded');
    assert.is(w.desk.journal.backlog, MAX_OWED_PER_STREAM, 'every owed decision waits for the journal');
    assert.is(journal!.waiting, 1, 'behind one held write');
    send(MAX_OWED_PER_STREAM + 1); // still owing as many: refused too
    await until('the second refusal', () => verdicts.length > 1);
    assert.equal(
      verdicts.map((v) => [v.seq, refusal(v)]),
      [
        [String(MAX_OWED_PER_STREAM), 'resource-constraint/wait'],
        [String(MAX_OWED_PER_STREAM + 1), 'resource-constraint/wait'],
      ],
    );

    journal!.release();
    await until('every owed verdict', () => verdicts.length >= MAX_OWED_PER_STREAM + 2);
    const owed = verdicts.slice(2);
    assert.is(owed.length, MAX_OWED_PER_STREAM, 'one verdict per owed stanza, no more');
    assert.equal(
      owed.map((v) => Number(v.seq)).sort((a, b) => a - b),
      Array.from({ length: MAX_OWED_PER_STREAM }, (_, i) => i),
      'each owed stanza got its own verdict',
    );
    assert.equal(
      owed.filter((v) => relayedTo(v) !== `ann@${D}`),
      [],
      'every owed one relayed to ann',
    );

    send(MAX_OWED_PER_STREAM + 2); // owing nothing now: accepted again
    await until('the verdict after', () => verdicts.length > MAX_OWED_PER_STREAM + 2);
    const after = verdicts.at(-1)!;
    assert.equal([after.seq, relayedTo(after)], [String(MAX_OWED_PER_STREAM + 2), `ann@${D}`]);
    call.end();
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test.run();
