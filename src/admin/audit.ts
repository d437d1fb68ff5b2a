// The audit log of the admin API, written by http.ts for every audited route (isAudited in routes.ts: every change
// made with a token, and audited reads) whatever the outcome: the entry is begun before the handler runs, and a
// failure to begin it is a 503 with nothing done; it is finished (status, target, before, after) before the answer is
// sent, and a failure to finish it is logged: the entry then stays with status null, the change stands.
import type { AuditStore, AuditTarget } from '../domain/audit.js';
import { redact } from '../domain/audit.js';
import type { Log } from '../domain/log.js';
import { HttpError, PROBLEM_TYPES } from './problem.js';
import type { Input, Match } from './router.js';
import { type AuditNote, Raw, WithHeaders } from './routes.js';
import type { Principal } from './tokens.js';

/** One audited request under way. */
export interface AuditCall {
  note: AuditNote;
  /** The validated input: its body is recorded, and the target it names. */
  input(input: Input): void;
  /** Records the outcome; never throws. `out`: the handler's answer (its JSON is the default `after`). */
  finish(status: number, out?: unknown, detail?: string): Promise<void>;
}

const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);

/** The shop, agent, visitor and group a request names, by its path parameters and body fields. */
export function targetOf(match: Match, input?: Input): AuditTarget {
  const p = match.params;
  const b = (input?.body ?? {}) as Record<string, unknown>;
  const t: AuditTarget = {
    shop: str(p.shop) ?? str(b.shop),
    agent: str(p.agent) ?? str(b.agent) ?? str(b.to),
    // /visitors/{jid}: the visitor is the path's JID.
    visitor: str(p.visitor) ?? (match.route.path.startsWith('/visitors/') ? str(p.jid) : undefined) ?? str(b.visitor),
    group: str(p.group) ?? str(b.toGroup),
  };
  return Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined));
}

export class Auditor {
  constructor(
    readonly store: AuditStore,
    private readonly log: Log,
    private readonly now: () => number = Date.now,
  ) {}

  async begin(who: Principal, match: Match, path: string): Promise<AuditCall> {
    const route = `${match.route.method} ${match.route.path}`;
    const target = targetOf(match);
    let id: number;
    try {
      id = await this.store.begin({ at: this.now(), token: who.name, role: who.role, method: match.route.method, path, route, target });
    } catch (e) {
      this.log.error('audit log: an entry could not be written; the request was refused', { route, token: who.name, err: e });
      throw new HttpError(
        503,
        'the audit log cannot be written right now, so nothing was changed; try again',
        PROBLEM_TYPES.auditUnavailable,
        {},
        {
          'retry-after': '1',
        },
      );
    }
    const said: { before?: unknown; after?: unknown } = {};
    let input: Input | undefined;
    return {
      note: {
        before: (v) => {
          said.before = v;
        },
        after: (v) => {
          said.after = v;
        },
      },
      input: (i) => {
        input = i;
      },
      finish: async (status, out, detail) => {
        const answer = out instanceof Raw ? undefined : out instanceof WithHeaders ? out.body : out;
        // A refusal changed nothing: no after.
        const after = status >= 300 ? undefined : 'after' in said ? said.after : answer;
        const fields = {
          ...(detail !== undefined ? { detail } : {}),
          ...(input?.body !== undefined ? { request: redact(input.body) } : {}),
          ...('before' in said ? { before: redact(said.before) } : {}),
          ...(after !== undefined ? { after: redact(after) } : {}),
        };
        try {
          await this.store.finish(id, { status, target: targetOf(match, input), ...fields });
        } catch (e) {
          this.log.error('audit log: the outcome of an entry could not be written (its status stays null)', { id, route, status, err: e });
        }
      },
    };
  }
}
