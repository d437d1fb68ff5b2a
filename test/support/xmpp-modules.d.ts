// Minimal typings for the untyped @xmpp/* 0.14 modules used by the test helpers.
declare module '@xmpp/client' {
  import type { EventEmitter } from 'node:events';
  import type { Element } from 'ltx';
  export interface XmppClient extends EventEmitter {
    jid: { toString(): string } | null;
    status: string;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(...elements: Element[]): Promise<void>;
    reconnect: { stop(): void };
    iqCaller: { request(el: Element, timeout?: number): Promise<Element> };
  }
  export type Authenticate = (credentials: { username: string; password: string }, mechanism: string) => Promise<void>;
  export function client(options: {
    credentials?: (authenticate: Authenticate, mechanisms: string[]) => Promise<void>;
    service: string;
    domain?: string;
    username?: string;
    password?: string;
    resource?: string;
    timeout?: number;
  }): XmppClient;
  export function xml(name: string, attrs?: Record<string, string>, ...children: unknown[]): Element;
}

declare module '@xmpp/xml/lib/parse.js' {
  import type { Element } from 'ltx';
  export default function parse(data: string): Element;
}

declare module 'ltx' {
  export class Element {
    name: string;
    attrs: Record<string, string>;
    children: Array<Element | string>;
    getName(): string;
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    toString(): string;
  }
}
