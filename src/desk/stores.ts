// The persistence the desk depends on, as interfaces: shops, agents and presence (Store) and closed
// sessions (ArchiveStore). src/storage/ implements them in memory and on SQL; the journal's port is
// in journal.ts beside the Journal.
import { type Shop, type Membership, type Agent, type AgentResource } from '../domain/shop.js';
import { type ArchiveRecord, type Rating, type ArchiveQuery, type ArchiveStats } from '../domain/archive.js';

export interface Store {
  listShops(): Promise<Shop[]>;
  getShop(jid: string): Promise<Shop | undefined>;
  putShop(shop: Shop): Promise<void>;
  deleteShop(jid: string): Promise<void>;

  memberships(): Promise<Membership[]>;
  putMembership(m: Membership): Promise<void>;
  deleteMembership(shop: string, agent: string): Promise<void>;

  getAgent(jid: string): Promise<Agent | undefined>;
  listAgents(): Promise<Agent[]>;
  putAgent(agent: Agent): Promise<void>;

  setResource(r: AgentResource): Promise<void>;
  removeResource(agent: string, resource: string): Promise<void>;
  /** Forget what a node reported (its stream reopened: it reports again). */
  clearNode(node: string): Promise<void>;
  resources(): Promise<AgentResource[]>;

  close(): Promise<void>;
}

export interface ArchiveStore {
  /** Idempotent: a record written again (a flush repeated after a restart) replaces itself, its rating kept. */
  put(records: ArchiveRecord[]): Promise<void>;
  rate(ratings: Rating[]): Promise<void>;
  search(q: ArchiveQuery): Promise<ArchiveRecord[]>;
  get(id: string): Promise<ArchiveRecord | undefined>;
  /** Deletes sessions that ended before `before`; returns how many. */
  purge(before: number): Promise<number>;
  stats(q: Pick<ArchiveQuery, 'shop' | 'from' | 'to'>): Promise<ArchiveStats[]>;
}
