// What the widget tells the shop about the visitor: the product it asks about (channelid `pid`, which
// routes the consult to that product's group, src/routing/groups.ts) and the visitor's context (name,
// e-mail, phone, free fields: the urn:xmpp:consult:context:0 child, src/domain/context.ts). The context
// goes with the first message of a page load and again whenever it changed; the server keeps it with the session.
import { xml, type XElement } from '@xmpp/client';

export const NS_CONTEXT = 'urn:xmpp:consult:context:0';
const WELL_KNOWN = ['name', 'email', 'phone', 'page', 'order'] as const;

export interface VisitorUser {
  name?: string;
  email?: string;
  phone?: string;
  order?: string;
}

export class VisitorContext {
  private known: Record<string, string> = {};
  private fields: Record<string, string> = {};
  private sent = '';
  product: string | undefined;

  constructor(product?: string) {
    this.product = product;
  }

  /** setUser({name, email, phone}): a value replaces the old one; '' forgets it (the server removes it too). */
  setUser(u: VisitorUser): void {
    for (const k of ['name', 'email', 'phone', 'order'] as const) if (typeof u[k] === 'string') this.known[k] = u[k]!.trim();
  }

  /** setFields({plan: 'gold'}): free key/value fields (names of A-Z a-z 0-9 _ . : -). */
  setFields(f: Record<string, unknown>): void {
    for (const [k, v] of Object.entries(f)) if (/^[A-Za-z0-9_.:-]{1,64}$/.test(k)) this.fields[k] = String(v ?? '').trim();
  }

  setPage(url: string): void {
    if (/^https?:\/\//i.test(url)) this.known.page = url.slice(0, 256);
  }

  /** The channelid of a visitor's message, with the product when there is one. */
  channel(base: string): string {
    if (!this.product) return base;
    return JSON.stringify({ ...(JSON.parse(base) as object), pid: this.product });
  }

  private signature(): string {
    return JSON.stringify([this.known, this.fields]);
  }

  /** The context child when it has not gone with a message yet in its present state, else undefined. */
  pending(): XElement | undefined {
    const sig = this.signature();
    if (sig === this.sent || (Object.keys(this.known).length === 0 && Object.keys(this.fields).length === 0)) return undefined;
    const kids: XElement[] = [];
    for (const k of WELL_KNOWN) if (k in this.known) kids.push(xml(k, {}, this.known[k]!));
    for (const n of Object.keys(this.fields).sort()) kids.push(xml('field', { var: n }, this.fields[n]!));
    return xml('context', { xmlns: NS_CONTEXT }, ...kids);
  }

  /** The stanza sent: its channelid carries the product, and it carries the context if that is new. */
  decorate(stanza: XElement): XElement {
    if (stanza.attrs.channelid) stanza.attrs.channelid = this.channel(stanza.attrs.channelid);
    const child = this.pending();
    if (child) {
      stanza.children.push(child);
      this.sent = this.signature();
    }
    return stanza;
  }

  /** A send failed: send the context again with the next message. */
  unsent(): void {
    this.sent = '';
  }
}
