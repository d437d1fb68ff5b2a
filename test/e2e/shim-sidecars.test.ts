// A real ejabberd whose shim talks to two scripted grpc-js sidecars (`sidecars` option): a
// message to a shop goes to the sidecar whose watch list owns the shop, and to no other; while
// no connected sidecar owns it the sender gets the failure policy at once, with a clear text;
// other consult traffic goes to the first connected sidecar; agents' sessions reach both.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeLayout } from '../../scripts/ejabberd-config.js';
import { freePort } from '../../scripts/ejabberd-node.js';
import {
  Action,
  type FilterRequest,
  type Hello,
  type SessionEvent,
  type ShimMessage,
  type SidecarMessage,
  StanzaFilterService,
  type Verdict,
} from '../../src/gen/consult/v1/filter.js';
import { parseElement, type XmlElement } from '../../src/xmpp/xml.js';
import { type Ejabberd, logText, startEjabberd, waitForLogLine } from '../support/ejabberd.js';
import { buildShim } from '../support/stack.js';
import { setUpSuite } from '../support/suite.js';
import { waitUntil } from '../support/wait.js';
import { connectClient, type Element, type TestClient } from '../support/xmpp.js';

const D = 'localhost';
const SHOP = `shop_2@${D}`;
const AGENT = `test01@${D}`;
const PASSWORD = 'secret';

/**
 * A sidecar that decides every consult message by dropping it and telling the sender who
 * decided (`decided by <name>: <body id>`), and pushes the watch list it is given.
 */
class ScriptedSidecar {
  server = new grpc.Server();
  hellos: Hello[] = [];
  events: SessionEvent[] = [];
  filters: FilterRequest[] = [];
  stream: grpc.ServerDuplexStream<ShimMessage, SidecarMessage> | undefined;
  port = 0;

  constructor(
    readonly name: string,
    public owned: string[],
  ) {}

  watch() {
    return { shops: [SHOP], agents: [AGENT], owned: this.owned, ownedEpochs: [] as string[], sidecar: this.name };
  }

  /** Claims these shops from now on (the full list, as the real sidecar sends it). */
  own(shops: string[]): void {
    this.owned = shops;
    this.stream?.write({ watch: this.watch() });
  }

  verdict(req: FilterRequest): Verdict {
    const el = parseElement(Buffer.from(req.stanza).toString());
    const body = el.children.find((c): c is XmlElement => typeof c !== 'string' && c.name === 'body');
    const note = `<message from='${el.attrs.to}' to='${el.attrs.from}' type='chat'><body>decided by ${this.name}: ${body?.attrs.id}</body></message>`;
    return {
      seq: req.seq,
      action: Action.ACTION_DROP,
      stanza: Buffer.alloc(0),
      error: undefined,
      extra: [Buffer.from(note)],
      attributes: [],
      extras: [],
    };
  }

  async listen(): Promise<void> {
    this.server.addService(StanzaFilterService, {
      filterStream: (call: grpc.ServerDuplexStream<ShimMessage, SidecarMessage>) => {
        this.stream = call;
        call.on('error', () => {});
        call.on('end', () => call.end());
        call.on('data', (msg: ShimMessage) => {
          if (msg.hello) {
            this.hellos.push(msg.hello);
            call.write({ watch: this.watch() });
          }
          if (msg.event) this.events.push(msg.event);
          if (msg.filter) {
            this.filters.push(msg.filter);
            call.write({ verdict: this.verdict(msg.filter) });
          }
        });
      },
      filter: (_call: grpc.ServerUnaryCall<FilterRequest, Verdict>, cb: grpc.sendUnaryData<Verdict>) =>
        cb({ code: grpc.status.UNIMPLEMENTED }),
      notify: (_call: grpc.ServerUnaryCall<SessionEvent, object>, cb: grpc.sendUnaryData<object>) => cb(null, {}),
    });
    const port = await freePort();
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  }

  /** Which of our stanzas carried this body id. */
  got(id: string): boolean {
    return this.filters.some((f) => Buffer.from(f.stanza).toString().includes(`id='${id}'`));
  }

  kill(): void {
    this.server.forceShutdown();
  }
}

interface Ctx {
  ejabberd: Ejabberd;
  a: ScriptedSidecar;
  b: ScriptedSidecar;
  visitor: TestClient;
  agent?: TestClient;
  /** Body ids of the consult messages a sidecar decided. */
  decided: string[];
}
const t = suite<Ctx>('e2e: mod_consult with two sidecars (sidecars option, one owner per shop)');

const log = (ctx: Ctx) => logText(ctx.ejabberd);
const waitForLog = (ctx: Ctx, from: number, re: RegExp, timeoutMs?: number) => waitForLogLine(ctx.ejabberd, from, re, timeoutMs);
const until = (what: string, cond: () => boolean) => waitUntil(what, cond);
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let n = 0;
/** Sends a consult message; resolves to who decided it ('A', 'B') or the error stanza. */
async function send(ctx: Ctx, to: string): Promise<{ by?: string; error?: Element; id: string }> {
  const id = `TWO-${++n}`;
  await ctx.visitor.send(`<message type='consult' to='${to}'><body id='${id}'>hello ${id}</body></message>`);
  const el = await ctx.visitor.waitFor(
    (e) => (e.attrs.type === 'error' && e.getChild('body')?.attrs.id === id) || (e.getChildText('body') ?? '').endsWith(`: ${id}`),
  );
  if (el.attrs.type === 'error') return { error: el, id };
  const by = /^decided by (\w+):/.exec(el.getChildText('body') ?? '')?.[1];
  assert.is([ctx.a, ctx.b].filter((s) => s.got(id)).length, 1, `${id} reached one sidecar`);
  ctx.decided.push(id);
  return { by, id };
}

let fences = 0;
/**
 * Resolves once each of `sidecars` has the agent's presence with a new status. The shim writes what it sends a
 * sidecar in order, on one stream: whatever it had sent them before is in by then.
 */
async function fence(ctx: Ctx, sidecars: ScriptedSidecar[]): Promise<void> {
  const status = `fence-${++fences}`;
  await ctx.agent!.send(`<presence><status>${status}</status></presence>`);
  await until(`the agent's presence "${status}" at ${sidecars.map((s) => s.name).join(' and ')}`, () =>
    sidecars.every((s) => s.events.some((e) => e.status === status)),
  );
}

/** After a fence: every message a sidecar decided so far reached that one only. */
function eachDecidedOnce(ctx: Ctx): void {
  const twice = ctx.decided.filter((id) => [ctx.a, ctx.b].filter((s) => s.got(id)).length !== 1);
  assert.equal(twice, [], 'each decided message reached exactly one sidecar');
}

setUpSuite(t, async (ctx) => {
  buildShim();
  ctx.decided = [];
  ctx.a = new ScriptedSidecar('A', [SHOP]);
  ctx.b = new ScriptedSidecar('B', []);
  await ctx.a.listen();
  await ctx.b.listen();
  // Started as an existing config is: the one sidecar_host/sidecar_port.
  ctx.ejabberd = await startEjabberd({
    domain: D,
    shimOptions: { sidecar_host: '127.0.0.1', sidecar_port: ctx.a.port, timeout: 2000, failure_policy: 'reject' },
  });
  await Promise.all([ctx.ejabberd.register('visitor1', PASSWORD), ctx.ejabberd.register('test01', PASSWORD)]);
  ctx.visitor = await connectClient({
    service: `xmpp://127.0.0.1:${ctx.ejabberd.c2sPort}`,
    domain: D,
    username: 'visitor1',
    password: PASSWORD,
    resource: 'r',
  });
});

t.after(async (ctx) => {
  await ctx.visitor?.stop().catch(() => undefined);
  await ctx.agent?.stop().catch(() => undefined);
  await ctx.ejabberd?.stop();
  ctx.a?.kill();
  ctx.b?.kill();
});

t('sidecar_host/sidecar_port alone: one connection, as before', async (ctx) => {
  await until('hello at A', () => ctx.a.hellos.length === 1);
  assert.equal(ctx.a.hellos[0].clusterNodes, [ctx.ejabberd.nodeName]);
  assert.is((await send(ctx, SHOP)).by, 'A');
});

t('sidecars: [A, B] by reload_config; a shop goes to its owner only, other consult traffic to the first', async (ctx) => {
  const from = log(ctx).length;
  const yml = nodeLayout(ctx.ejabberd.dir).configPath;
  const block = [
    '  mod_consult:',
    `    sidecars: ["127.0.0.1:${ctx.a.port}", "127.0.0.1:${ctx.b.port}"]`,
    `    sidecar_token: ${JSON.stringify(ctx.ejabberd.credential.token)}`,
    '    timeout: 2000',
    '    failure_policy: reject',
    '',
  ].join('\n');
  const before = fs.readFileSync(yml, 'utf8');
  const after = before.replace(/^ {2}mod_consult:\n(?: {4}.*\n)*/m, block);
  assert.is.not(after, before);
  fs.writeFileSync(yml, after);
  const r = await ctx.ejabberd.ctl('reload_config');
  assert.is(r.code, 0, r.stdout + r.stderr);
  await waitForLog(
    ctx,
    from,
    new RegExp(`consult: sidecar settings changed, reconnecting to 127\\.0\\.0\\.1:${ctx.a.port}, 127\\.0\\.0\\.1:${ctx.b.port}`),
  );
  await until('hellos at A (again) and B', () => ctx.a.hellos.length === 2 && ctx.b.hellos.length === 1);
  await waitForLog(ctx, from, new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.a.port} \\(A\\) decides 1 shops now \\(\\+1: ${esc(SHOP)}`));

  for (let i = 0; i < 3; i++) assert.is((await send(ctx, SHOP)).by, 'A');
  assert.is((await send(ctx, `nobody@${D}`)).by, 'A', 'not a shop: the first connected sidecar');
});

t("agents' sessions and presence go to both", async (ctx) => {
  ctx.agent = await connectClient({
    service: `xmpp://127.0.0.1:${ctx.ejabberd.c2sPort}`,
    domain: D,
    username: 'test01',
    password: PASSWORD,
    resource: 'desk',
  });
  const seen = (s: ScriptedSidecar) => s.events.some((e) => e.jid === `${AGENT}/desk` && e.kind === 3); // PRESENCE_SET
  await until('the agent at both sidecars', () => seen(ctx.a) && seen(ctx.b));
  // Both streams carry the agent's presence after the earlier cases' messages: none of those went to both.
  await fence(ctx, [ctx.a, ctx.b]);
  eachDecidedOnce(ctx);
});

t('ownership moves to B; A goes: no owner, the failure policy at once; B claims it: B decides', async (ctx) => {
  let from = log(ctx).length;
  ctx.b.own([SHOP]);
  ctx.a.own([]);
  await waitForLog(ctx, from, new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.a.port} \\(A\\) decides 0 shops now`));
  assert.is((await send(ctx, SHOP)).by, 'B');

  from = log(ctx).length;
  ctx.b.own([]);
  ctx.a.own([SHOP]);
  await waitForLog(ctx, from, new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.a.port} \\(A\\) decides 1 shops now`));
  await waitForLog(ctx, from, new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.b.port} \\(B\\) decides 0 shops now`));
  assert.is((await send(ctx, SHOP)).by, 'A');
  await fence(ctx, [ctx.a, ctx.b]);
  eachDecidedOnce(ctx);

  from = log(ctx).length;
  ctx.a.kill();
  await waitForLog(ctx, from, new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.a.port} \\(A\\) disconnected, its 1 shops have no owner`));
  const bounced = await send(ctx, SHOP);
  assert.ok(bounced.error, 'bounced');
  const err = bounced.error.getChild('error')!;
  assert.is(err.attrs.type, 'wait');
  assert.ok(err.getChild('service-unavailable'), err.toString());
  assert.match(err.getChildText('text') ?? '', `No consult sidecar owns ${SHOP} right now`);
  await waitForLog(
    ctx,
    from,
    new RegExp(`\\[warning\\].*consult: no consult sidecar owns ${esc(SHOP)} right now: a message from visitor1@`),
  );
  assert.is((await send(ctx, `nobody@${D}`)).by, 'B', 'other consult traffic goes to B now');
  // That one came after the bounced one on B's stream: had the shim sent B the bounced one, B would have it.
  assert.not.ok(ctx.b.got(bounced.id), 'B, which does not own the shop, never saw it');

  ctx.b.own([SHOP]);
  await waitForLog(ctx, from, new RegExp(`sidecar 127\\.0\\.0\\.1:${ctx.b.port} \\(B\\) decides 1 shops now`));
  assert.is((await send(ctx, SHOP)).by, 'B');
  await fence(ctx, [ctx.b]);
  eachDecidedOnce(ctx);
});

t.run();
