// Which shims may use the link. Each credential names the ejabberd node it speaks for: a
// stream must present a known token in its `authorization: Bearer …` metadata before
// anything is read or sent, and its hello may claim only that token's node.
import { createHash, timingSafeEqual } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';

export interface ShimCredential {
  node: string; // Erlang node name, e.g. ejabberd@host
  token: string;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class ShimAuth {
  private readonly creds: { node: string; digest: Buffer }[];

  constructor(creds: ShimCredential[]) {
    this.creds = creds.map((c) => ({ node: c.node, digest: digest(`Bearer ${c.token}`) }));
  }

  /** False when no credentials are configured: any local client is trusted (the sidecar warns at start). */
  get required(): boolean {
    return this.creds.length > 0;
  }

  /** The node a call's credential speaks for ('*' when none are required); undefined when refused. */
  nodeOf(metadata: grpc.Metadata): string | undefined {
    if (!this.required) return '*';
    const [value] = metadata.get('authorization');
    const given = digest(typeof value === 'string' ? value : '');
    // Compare digests with every credential, so the time taken says nothing about the token.
    let node: string | undefined;
    for (const c of this.creds) if (timingSafeEqual(c.digest, given)) node ??= c.node;
    return node;
  }
}
