// Admin routes over shops, memberships, groups, agents, sessions and the queue. PUT replaces a resource with the
// body (what it leaves out takes its default), PATCH merges the body into it (what it leaves out stays).
import { checkGroupsInto } from '../domain/config-schema.js';
import type { Limits, Shop } from '../domain/shop.js';
import { DEFAULT_NO_AGENT_TEXT, type Texts } from '../domain/texts.js';
import type { Desk } from '../desk/desk.js';
import type { Directory } from '../desk/directory.js';
import type { Store } from '../desk/ports.js';
import type { Presence } from '../desk/presence.js';
import type { Ownership } from '../cluster/ownership.js';
import type { WatchList } from '../cluster/watch-list.js';
import { type FieldProblem, HttpError, PROBLEM_TYPES, invalid } from './problem.js';
import { type AuditNote, DECIDED_HERE_PROBLEMS, type Route, adminRoute } from './routes.js';
import { shopLookup } from './shop-lookup.js';
import { cannedRoutes } from './canned-routes.js';
import { webhookOut, webhookRoutes } from './webhook-routes.js';
import {
  AgentParams,
  AgentView,
  CloseBody,
  Closed,
  Deleted,
  GroupParams,
  GroupPutBody,
  MembershipParams,
  MembershipPatchBody,
  MembershipPutBody,
  QueueQuery,
  SessionView,
  SessionsQuery,
  ShopParams,
  ShopPatchBody,
  ShopPutBody,
  ShopView,
  StatusBody,
  TransferBody,
  Transferred,
  WaitingView,
  WholeBot,
} from './schemas.js';
import { validate } from './validate.js';
import { z } from 'zod';

export interface ShopRouteDeps {
  store: Store;
  directory: Directory;
  desk: Desk;
  presence: Presence;
  /** Told after every shop or agent change. */
  watch: WatchList;
  /** Adopts a new shop (or lets its owner do so) right after it is added. */
  ownership: Ownership;
  /** Limits of a new shop that names none (the config's defaults). */
  defaultLimits: Limits;
  now: () => number;
}

/** Groups that name agents outside the shop, twice a name, or two defaults: 400 naming groups[i]. */
function checkGroups(groups: Shop['groups'], members: ReadonlySet<string>): void {
  const errors: FieldProblem[] = [];
  checkGroupsInto(groups, members, (path, detail) => {
    const field = `groups${path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('')}`;
    errors.push({ in: 'body', field, pointer: `#/groups/${path.join('/')}`.replace(/\/$/, ''), detail });
  });
  if (errors.length) throw invalid(errors);
}

/** A whole shop from a PUT body: the defaults that depend on other fields (welcome, texts, limits) resolved. */
function shopFrom(jid: string, b: z.output<typeof ShopPutBody>, defaultLimits: Limits): Shop {
  return {
    jid,
    name: b.name,
    welcome: b.welcome ?? b.name,
    noAgentText: b.noAgentText ?? DEFAULT_NO_AGENT_TEXT[b.language],
    strategy: b.strategy as Shop['strategy'],
    queueEnabled: b.queueEnabled,
    limits: { ...defaultLimits, ...b.limits },
    language: b.language,
    texts: b.texts as Partial<Texts>,
    groups: b.groups as Shop['groups'],
    bot: b.bot as Shop['bot'],
    ...(b.answerTimeoutSec !== undefined ? { answerTimeoutSec: b.answerTimeoutSec } : {}),
    ...(b.maxMissedChats !== undefined ? { maxMissedChats: b.maxMissedChats } : {}),
    ...(b.hours ? { hours: b.hours as Shop['hours'] } : {}),
    ...(b.queueMaxWaitSec !== undefined ? { queueMaxWaitSec: b.queueMaxWaitSec } : {}),
    ...(b.supervisors?.length ? { supervisors: [...new Set(b.supervisors)] } : {}),
    ...(b.canned && Object.keys(b.canned).length ? { canned: b.canned } : {}),
  };
}

/** A merge's object without its nulls (removals), as a new resource's body. */
const withoutNulls = (o: Record<string, unknown> | undefined) =>
  o && Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));

/** A bot with the fields given replaced (url null: removed). */
function mergeBot(old: Shop['bot'], given: Record<string, unknown>): Record<string, unknown> {
  const bot: Record<string, unknown> = { ...old, ...given };
  if (bot.url === null) delete bot.url;
  return bot;
}

/** The shop an existing one becomes with a PATCH body merged in (texts set to null go back to their defaults). */
function merged(old: Shop, b: z.output<typeof ShopPatchBody>): Shop {
  const texts: Record<string, string> = { ...old.texts };
  for (const [k, v] of Object.entries(b.texts ?? {})) {
    if (v === null || v === undefined) delete texts[k];
    else texts[k] = v;
  }
  return {
    ...old,
    ...(Object.fromEntries(
      (
        [
          'name',
          'welcome',
          'noAgentText',
          'strategy',
          'queueEnabled',
          'language',
          'groups',
          'answerTimeoutSec',
          'maxMissedChats',
          'queueMaxWaitSec',
          'supervisors',
          'canned',
        ] as const
      )
        .filter((k) => b[k] !== undefined)
        .map((k) => [k, b[k]]),
    ) as Partial<Shop>),
    limits: { ...old.limits, ...b.limits },
    texts: texts as Partial<Texts>,
    ...(b.hours !== undefined ? { hours: (b.hours ?? undefined) as Shop['hours'] } : {}),
    // Bot fields given replace the shop's, the others stay: the bot it leads to is checked whole.
    bot: b.bot === undefined ? old.bot : (validate(WholeBot, mergeBot(old.bot, b.bot), 'body', ['bot']) as Shop['bot']),
  };
}

export function shopRoutes(deps: ShopRouteDeps): Route[] {
  const { store, directory, desk, presence } = deps;

  // Every shop/agent change: refresh the in-memory view and tell the shims what to forward.
  const changed = async (drain: string[] = []) => {
    await directory.reload();
    desk.shops.refresh();
    await deps.ownership.round();
    deps.watch.publish();
    for (const shop of drain) await desk.drainQueue(shop);
  };
  const { requireShop, requireOwned } = shopLookup(directory, desk);
  const members = (shop: string) => new Set(directory.membersOf(shop).map((m) => m.agent));
  const agentView = async (jid: string): Promise<z.input<typeof AgentView>> => {
    const agent = await store.getAgent(jid);
    const shops = directory.shopsOf(jid);
    if (!agent && shops.length === 0) throw new HttpError(404, `${jid} is not an agent`);
    return {
      jid,
      status: presence.status(jid),
      shops: shops.map((s) => {
        const missed = desk.view.missedOf(s.jid, jid);
        return {
          shop: s.jid,
          maxSessions: directory.membership(s.jid, jid)!.maxSessions,
          sessions: desk.view.loadOf(s.jid, jid),
          ...(missed ? { missedChats: missed.total, missedInRow: missed.inRow } : {}),
        };
      }),
      resources: presence.resourcesOf(jid).map(({ resource, node, show, priority }) => ({ resource, node, show, priority })),
    };
  };
  const shopView = ({ events, ...s }: Shop): z.input<typeof ShopView> => ({
    ...s,
    ...(events === undefined ? {} : { events: webhookOut(events) }), // never its secret
    agents: directory.membersOf(s.jid).map((m) => ({ jid: m.agent, maxSessions: m.maxSessions })),
    decidedHere: desk.shops.owns(s.jid),
  });
  const notAnAgent = (jid: string) => {
    if (directory.isAgent(jid)) throw new HttpError(409, `${jid} is an agent; a shop JID cannot also be an agent`, PROBLEM_TYPES.refused);
  };
  /** Stores the shop, then answers it as the directory now sees it (drain: its queue may move on, as after a group change). */
  const putShop = async (shop: Shop, drain: string[] = []) => {
    await store.putShop(shop);
    await changed(drain);
    return shopView(directory.shop(shop.jid)!);
  };
  /** A membership as the audit log shows it before and after a change (null: none). */
  const memberView = (shop: string, agent: string) => {
    const m = directory.membership(shop, agent);
    return m ? { shop, agent, maxSessions: m.maxSessions } : null;
  };
  const groupView = (shop: Shop, name: string) => shop.groups.find((g) => g.name === name) ?? null;
  /** A session as the audit log shows it before a close or transfer (null: none open here). */
  const sessionView = (shop: string, visitor: string) => {
    const s = desk.view.sessions(shop).find((x) => x.visitor === visitor);
    return s ? { shop, visitor, agent: s.agent } : null;
  };
  const putMembership = async (shop: Shop, agent: string, maxSessions: number, audit: AuditNote) => {
    if (directory.shop(agent)) throw new HttpError(409, `${agent} is a shop; it cannot also be an agent`, PROBLEM_TYPES.refused);
    const old = directory.membership(shop.jid, agent);
    audit.before(memberView(shop.jid, agent));
    await store.putMembership({ shop: shop.jid, agent, maxSessions, joinedAt: old?.joinedAt ?? deps.now() });
    if (!(await store.getAgent(agent))) await store.putAgent({ jid: agent, status: 'standard' });
    await changed([shop.jid]);
    audit.after(memberView(shop.jid, agent));
    return agentView(agent);
  };
  const shopRoute = adminRoute('shops');
  const agentRoute = adminRoute('agents');
  const sessionRoute = adminRoute('sessions');
  const removed = { description: 'removed', json: Deleted };

  return [
    ...cannedRoutes({ store, directory, requireShop, changed: () => changed() }),
    ...webhookRoutes({ store, directory, requireShop, hookOf: (s) => desk.sender.hookOf(s), changed: () => changed() }),
    shopRoute({
      method: 'GET',
      path: '/shops',
      operationId: 'listShops',
      summary: 'Every shop with its agents',
      ok: { description: 'the shops', json: z.array(ShopView) },
      handle: async () => directory.allShops().map(shopView),
    }),
    shopRoute({
      method: 'GET',
      path: '/shops/{shop}',
      operationId: 'getShop',
      summary: 'One shop, and whether this sidecar decides it',
      params: ShopParams,
      ok: { description: 'the shop', json: ShopView },
      problems: [404],
      handle: async ({ params }) => shopView(requireShop(params.shop)),
    }),
    shopRoute({
      method: 'PUT',
      path: '/shops/{shop}',
      operationId: 'putShop',
      summary: 'Create or replace a shop',
      description: 'The body is the whole shop: a field it leaves out takes its default, not its old value (PATCH merges).',
      params: ShopParams,
      body: ShopPutBody,
      ok: { description: 'the shop as stored', json: ShopView },
      problems: [409],
      handle: async ({ params, body, audit }) => {
        notAnAgent(params.shop);
        const old = directory.shop(params.shop);
        audit.before(old ? shopView(old) : null);
        // Its own webhook is a resource of its own (/shops/{shop}/events): a whole shop's body leaves it as it is.
        const shop = { ...shopFrom(params.shop, body, deps.defaultLimits), ...(old?.events !== undefined ? { events: old.events } : {}) };
        checkGroups(shop.groups, members(shop.jid));
        return putShop(shop);
      },
    }),
    shopRoute({
      method: 'PATCH',
      path: '/shops/{shop}',
      operationId: 'patchShop',
      summary: 'Change some fields of a shop (or create it)',
      description:
        'A merge (RFC 7396): the fields given change, the others stay; in texts, null removes an override; bot fields merge ' +
        'into the shop’s bot. A shop that does not exist yet is created as by PUT (then name is required).',
      params: ShopParams,
      body: ShopPatchBody,
      ok: { description: 'the shop as stored', json: ShopView },
      problems: [409],
      handle: async ({ params, body, audit }) => {
        notAnAgent(params.shop);
        const old = directory.shop(params.shop);
        audit.before(old ? shopView(old) : null);
        const shop = old
          ? merged(old, body)
          : shopFrom(
              params.shop,
              validate(ShopPutBody, { ...body, texts: withoutNulls(body.texts), bot: withoutNulls(body.bot) }, 'body'),
              deps.defaultLimits,
            );
        if (body.groups !== undefined) checkGroups(shop.groups, members(shop.jid));
        return putShop(shop);
      },
    }),
    shopRoute({
      method: 'DELETE',
      path: '/shops/{shop}',
      operationId: 'deleteShop',
      summary: 'Remove a shop without open sessions or waiting visitors',
      params: ShopParams,
      ok: removed,
      problems: [...DECIDED_HERE_PROBLEMS, 409],
      handle: async ({ params, audit }) => {
        const shop = requireOwned(params.shop);
        audit.before(shopView(shop));
        audit.after(null);
        // Open sessions or waiting visitors would be stranded: the admin closes them first.
        const { sessions, queue: queued, left } = desk.view.counts(shop.jid);
        const queue = queued + left; // left messages wait too
        if (sessions || queue)
          throw new HttpError(
            409,
            `${shop.jid} has ${sessions} open sessions and ${queue} waiting visitors; close them first`,
            PROBLEM_TYPES.refused,
          );
        await store.deleteShop(shop.jid);
        await changed();
        await desk.shops.forget(shop.jid);
        return { deleted: shop.jid };
      },
    }),
    agentRoute({
      method: 'PUT',
      path: '/shops/{shop}/agents/{agent}',
      operationId: 'putMembership',
      summary: 'Add an agent to a shop, or replace its membership',
      description: 'maxSessions left out is the default (5), whatever it was (PATCH keeps it).',
      params: MembershipParams,
      body: MembershipPutBody,
      ok: { description: 'the agent', json: AgentView },
      problems: [404, 409],
      handle: async ({ params, body, audit }) => putMembership(requireShop(params.shop), params.agent, body.maxSessions, audit),
    }),
    agentRoute({
      method: 'PATCH',
      path: '/shops/{shop}/agents/{agent}',
      operationId: 'patchMembership',
      summary: 'Change an agent’s membership of a shop (or add it)',
      description: 'maxSessions left out stays as it was (5 for a new member).',
      params: MembershipParams,
      body: MembershipPatchBody,
      ok: { description: 'the agent', json: AgentView },
      problems: [404, 409],
      handle: async ({ params, body, audit }) => {
        const shop = requireShop(params.shop);
        const max =
          (body.maxSessions as number | undefined) ??
          directory.membership(shop.jid, params.agent)?.maxSessions ??
          MembershipPutBody.parse({}).maxSessions;
        return putMembership(shop, params.agent, max, audit);
      },
    }),
    agentRoute({
      method: 'DELETE',
      path: '/shops/{shop}/agents/{agent}',
      operationId: 'deleteMembership',
      summary: 'Remove an agent from a shop (and its groups)',
      description: 'Its open sessions there move on as an offline agent’s do.',
      params: MembershipParams,
      ok: removed,
      problems: [404],
      handle: async ({ params, audit }) => {
        const shop = requireShop(params.shop);
        const agent = params.agent;
        if (!directory.membership(shop.jid, agent)) throw new HttpError(404, `${agent} is not an agent of ${shop.jid}`);
        audit.before(memberView(shop.jid, agent));
        audit.after(null);
        await store.deleteMembership(shop.jid, agent);
        if (shop.groups.some((g) => g.agents.includes(agent)))
          await store.putShop({ ...shop, groups: shop.groups.map((g) => ({ ...g, agents: g.agents.filter((a) => a !== agent) })) });
        await changed();
        return { deleted: agent, shop: shop.jid };
      },
    }),
    agentRoute({
      method: 'GET',
      path: '/agents/{agent}',
      operationId: 'getAgent',
      summary: 'An agent: status, shops (capacity, open sessions), online resources',
      params: AgentParams,
      ok: { description: 'the agent', json: AgentView },
      problems: [404],
      handle: async ({ params }) => agentView(params.agent),
    }),
    agentRoute({
      method: 'PUT',
      path: '/agents/{agent}/status',
      operationId: 'putAgentStatus',
      summary: 'Set an agent’s service status',
      params: AgentParams,
      body: StatusBody,
      ok: { description: 'the agent', json: AgentView },
      role: 'operator',
      problems: [404],
      handle: async ({ params, body, audit }) => {
        const old = await agentView(params.agent); // 404 for an unknown agent
        audit.before({ agent: params.agent, status: old.status });
        await desk.setAgentStatus(params.agent, body.status as Parameters<Desk['setAgentStatus']>[1]);
        const now = await agentView(params.agent);
        audit.after({ agent: params.agent, status: now.status });
        return now;
      },
    }),
    shopRoute({
      method: 'PUT',
      path: '/shops/{shop}/groups/{group}',
      operationId: 'putGroup',
      summary: 'Create or replace a group of a shop',
      description: 'A group made the default leaves the others without it.',
      params: GroupParams,
      body: GroupPutBody,
      ok: { description: 'the shop', json: ShopView },
      problems: [404],
      handle: async ({ params, body, audit }) => {
        const shop = requireShop(params.shop);
        audit.before(groupView(shop, params.group));
        const group = { name: params.group, ...body } as Shop['groups'][number];
        const groups = [...shop.groups.filter((g) => g.name !== group.name), group].map((g) =>
          group.isDefault && g !== group ? { ...g, isDefault: false } : g,
        );
        checkGroups(groups, members(shop.jid));
        const view = await putShop({ ...shop, groups }, [shop.jid]);
        audit.after(groupView(directory.shop(shop.jid)!, params.group));
        return view;
      },
    }),
    shopRoute({
      method: 'DELETE',
      path: '/shops/{shop}/groups/{group}',
      operationId: 'deleteGroup',
      summary: 'Remove a group of a shop',
      params: GroupParams,
      ok: removed,
      problems: [404],
      handle: async ({ params, audit }) => {
        const shop = requireShop(params.shop);
        if (!shop.groups.some((g) => g.name === params.group)) throw new HttpError(404, `${params.group} is not a group of ${shop.jid}`);
        audit.before(groupView(shop, params.group));
        audit.after(null);
        await store.putShop({ ...shop, groups: shop.groups.filter((g) => g.name !== params.group) });
        await changed([shop.jid]);
        return { deleted: params.group, shop: shop.jid };
      },
    }),
    sessionRoute({
      method: 'GET',
      path: '/sessions',
      operationId: 'listSessions',
      summary: 'Open sessions of the shops decided here',
      query: SessionsQuery,
      ok: { description: 'the sessions', json: z.array(SessionView) },
      problems: DECIDED_HERE_PROBLEMS,
      handle: async ({ query }) => desk.view.sessions(query.shop === undefined ? undefined : requireOwned(query.shop).jid),
    }),
    sessionRoute({
      method: 'POST',
      path: '/sessions/close',
      operationId: 'closeSession',
      summary: 'Close a session (both parties are told)',
      body: CloseBody,
      ok: { description: 'closed', json: Closed },
      role: 'operator',
      problems: [...DECIDED_HERE_PROBLEMS, 409],
      handle: async ({ body, audit }) => {
        audit.before(sessionView(body.shop, body.visitor));
        await desk.closeSession(body.shop, body.visitor, 'admin');
        return { closed: { shop: body.shop, visitor: body.visitor } };
      },
    }),
    sessionRoute({
      method: 'POST',
      path: '/sessions/transfer',
      operationId: 'transferSession',
      summary: 'Hand a session over, with its history, to an agent or a group',
      description: 'To a group: the agent its strategy picks (409 when none has room).',
      body: TransferBody,
      ok: { description: 'transferred', json: Transferred },
      role: 'operator',
      problems: [...DECIDED_HERE_PROBLEMS, 409],
      handle: async ({ body, audit }) => {
        const { shop, visitor, reason = '' } = body;
        audit.before(sessionView(shop, visitor));
        if (body.toGroup !== undefined) {
          await desk.transferToGroup(shop, visitor, body.toGroup, reason);
          return { transferred: { shop, visitor, toGroup: body.toGroup } };
        }
        await desk.transferSession(shop, visitor, body.to!, reason);
        return { transferred: { shop, visitor, to: body.to! } };
      },
    }),
    sessionRoute({
      method: 'GET',
      path: '/queue',
      operationId: 'getQueue',
      summary: 'Visitors waiting in a shop decided here, oldest first',
      query: QueueQuery,
      ok: { description: 'the queue', json: z.array(WaitingView) },
      problems: DECIDED_HERE_PROBLEMS,
      handle: async ({ query }) => desk.view.queue(requireOwned(query.shop).jid),
    }),
  ];
}
