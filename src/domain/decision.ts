// What the sidecar answers about one stanza (the shim applies it), and a refused action.
import type { XmlElement } from '../xmpp/xml.js';
import { serialize } from '../xmpp/xml.js';

export interface StanzaErrorInfo {
  condition: string; // RFC 6120 defined condition
  type: 'cancel' | 'modify' | 'wait' | 'auth';
  text: string;
}

export type Decision =
  | { action: 'pass'; extra: XmlElement[] }
  | { action: 'rewrite'; stanza: XmlElement; xml: string; extra: XmlElement[] } // xml: the stanza, serialized once
  | { action: 'drop'; extra: XmlElement[] }
  | { action: 'reject'; error: StanzaErrorInfo; extra: XmlElement[] };

/** A refused action (unknown session, agent not available...): an error for the sender, nothing changed. */
export class ConsultError extends Error {
  constructor(readonly error: StanzaErrorInfo) {
    super(error.text);
  }
}

export const PASS: Decision = { action: 'pass', extra: [] };

export const reject = (condition: string, type: StanzaErrorInfo['type'], text: string): Decision => ({
  action: 'reject',
  error: { condition, type, text },
  extra: [],
});

export const refuse = (condition: string, type: StanzaErrorInfo['type'], text: string) => new ConsultError({ condition, type, text });

export const rewrite = (stanza: XmlElement, extra: XmlElement[], xml = serialize(stanza)): Decision => ({
  action: 'rewrite',
  stanza,
  xml,
  extra,
});

export const drop = (extra: XmlElement[] = []): Decision => ({ action: 'drop', extra });
