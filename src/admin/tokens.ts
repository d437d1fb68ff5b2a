// The admin API's bearer tokens: each has a name (what the audit log says) and a role. A presented token is compared,
// as a SHA-256 digest in constant time, with every configured one, so the time taken says nothing about which (or
// whether one) matched. Tokens are kept only as digests (a config may give just the SHA-256).
import { createHash, timingSafeEqual } from 'node:crypto';
import { type Role, roleAllows } from '../domain/audit.js';
import { HttpError, PROBLEM_TYPES } from './problem.js';
import type { Route } from './routes.js';

/** Who made a request: the token's name and role. */
export interface Principal {
  name: string;
  role: Role;
}

/** A token as the API knows it: its secret as the token itself or as the hex SHA-256 of it. */
export type AdminToken = Principal & ({ token: string } | { sha256: string });

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export class AdminTokens {
  private readonly known: { who: Principal; digest: Buffer }[];

  constructor(tokens: readonly AdminToken[]) {
    this.known = tokens.map((t) => ({
      who: { name: t.name, role: t.role },
      digest: 'token' in t ? sha256(t.token) : Buffer.from(t.sha256, 'hex'),
    }));
  }

  get size() {
    return this.known.length;
  }

  /** The principal of an Authorization header (`Bearer <token>`); undefined when it names no known token. */
  principal(authorization: string | undefined): Principal | undefined {
    const m = /^Bearer (.+)$/.exec(authorization ?? '');
    const digest = sha256(m ? m[1] : '');
    let found: Principal | undefined;
    // Every one compared, no early exit.
    for (const k of this.known) if (timingSafeEqual(digest, k.digest) && !found) found = k.who;
    return m ? found : undefined;
  }
}

/** 403 unless the principal's role allows the route. */
export function authorize(who: Principal, route: Route): void {
  const needs = route.role ?? 'admin';
  if (roleAllows(who.role, needs)) return;
  throw new HttpError(
    403,
    `the token ${who.name} has the role ${who.role}; ${route.method} ${route.path} needs the role ${needs}${needs === 'admin' ? '' : ' or admin'}`,
    PROBLEM_TYPES.forbidden,
  );
}
