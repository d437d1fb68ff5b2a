// Stanzas straight between two users (not to a shop): passed, with the server-only attributes removed.
import { withoutRealAddresses } from '../xmpp/stanzas.js';
import type { XmlElement } from '../xmpp/xml.js';
import { type Decision, PASS } from '../domain/decision.js';
import { rewrite } from '../domain/decision.js';

/** A readmark or other stanza straight between two users: realfrom/realto are the server's to set. */
export function passThrough(stanza: XmlElement): Decision {
  return 'realfrom' in stanza.attrs || 'realto' in stanza.attrs ? rewrite(withoutRealAddresses(stanza), []) : PASS;
}
