// Minimal typings for @xmpp/client 0.14's browser build (bundled by esbuild, see scripts/build-web.mjs).
declare module '@xmpp/client' {
  export interface XElement {
    name: string;
    attrs: Record<string, string>;
    children: Array<XElement | string>;
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): XElement | undefined;
    getChildren(name: string, xmlns?: string): XElement[];
    getChildText(name: string, xmlns?: string): string | null;
    text(): string;
    toString(): string;
  }
  export interface XmppClient {
    jid: { toString(): string; bare(): { toString(): string } } | null;
    status: string;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(...elements: XElement[]): Promise<void>;
    on(event: 'stanza' | 'element', cb: (el: XElement) => void): void;
    on(event: 'online', cb: (jid: { toString(): string }) => void): void;
    on(event: 'status', cb: (status: string) => void): void;
    on(event: 'error', cb: (e: Error & { condition?: string }) => void): void;
    on(event: string, cb: (...args: any[]) => void): void;
    removeListener(event: string, cb: (...args: any[]) => void): void;
    reconnect: { stop(): void; start(): void; delay: number };
    iqCaller: { request(el: XElement, timeout?: number): Promise<XElement> };
  }
  export type Authenticate = (credentials: { username: string; password: string }, mechanism: string) => Promise<void>;
  export function client(options: {
    service: string;
    domain: string;
    resource?: string;
    credentials?: (authenticate: Authenticate, mechanisms: string[], fast: unknown, entity: XmppClient) => Promise<void>;
    timeout?: number;
  }): XmppClient;
  export function xml(name: string, attrs?: Record<string, string | undefined>, ...children: Array<XElement | string>): XElement;
}
