// `/history [<visitor>]`: an agent asks for a visitor's earlier sessions of the shop. Decisions are synchronous and
// the archive is not, so the decision only acks and records a look-up (Changes.lookups); the desk searches the
// archive once the decision is durable and sends the answer built here (src/desk/after-commit.ts):
//   <message … qchatid='4'><body msgType='15' …>Earlier sessions of v1@host (2):
//   2024-05-01 10:00 UTC, agent a1@host, rated 5: where is my order?</body>
//     <history xmlns='urn:xmpp:consult:history:0' visitor='v1@host' sessions='2'>
//       <session id='…' started='…' ended='…' agent='a1@host' reason='agent' rating='5'><first>where is my order?</first>
//         <context xmlns='urn:xmpp:consult:context:0'>…</context></session>
//     </history></message>
// Any agent of the shop may ask about any of its visitors (they serve the same customers); nothing is journaled.
import type { ArchiveRecord } from '../domain/archive.js';
import { contextElement, isEmptyContext } from '../domain/context.js';
import { drop, type Decision } from '../domain/decision.js';
import { render, type Texts } from '../domain/texts.js';
import { QCHAT_TO_AGENT, ack, ensureBodyId, notice } from '../xmpp/stanzas.js';
import { el, type XmlElement } from '../xmpp/xml.js';
import type { Changes, HistoryLookup, ShopContext } from './changes.js';

export const NS_HISTORY = 'urn:xmpp:consult:history:0';
/** The newest this many sessions are listed. */
export const HISTORY_MAX = 10;
const FIRST_LINE_CHARS = 120;

/** The decision: acked now, answered by the desk from the archive once durable. */
export function askHistory(cx: ShopContext, w: Changes, stanza: XmlElement, agent: string, visitor: string): Decision {
  w.lookups.push({ agent, visitor, at: cx.now });
  return drop([ack(agent, ensureBodyId(stanza)!, cx.now)]);
}

export interface HistoryAnswer {
  shop: string;
  texts: Texts;
  lookup: HistoryLookup;
  /** Newest first; an Error: the archive did not answer. */
  found: ArchiveRecord[] | Error;
}

const firstLine = (r: ArchiveRecord) => {
  const text = r.lines.find((l) => l.role === 'visitor')?.text ?? '';
  return text.length > FIRST_LINE_CHARS ? `${text.slice(0, FIRST_LINE_CHARS - 1)}…` : text;
};
const when = (at: number) => `${new Date(at).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** The notice that answers a look-up: readable text and the structured child (none when the archive failed). */
export function historyAnswer(a: HistoryAnswer): XmlElement {
  const { lookup, texts } = a;
  const base = { shop: a.shop, to: lookup.agent, realfrom: lookup.visitor, qchatid: QCHAT_TO_AGENT, now: lookup.at };
  if (a.found instanceof Error) return notice({ ...base, text: render(texts.historyFailed, { visitor: lookup.visitor }) });
  const list = a.found.slice(0, HISTORY_MAX);
  const lines = list.map((r) => {
    const rated = r.rating !== undefined ? `, rated ${r.rating}` : '';
    const first = firstLine(r);
    return `${when(r.startedAt)}, agent ${r.agent}${rated}${first ? `: ${first}` : ''}`;
  });
  const text = list.length
    ? [render(texts.historyToAgent, { visitor: lookup.visitor, count: list.length }), ...lines].join('\n')
    : render(texts.historyNone, { visitor: lookup.visitor });
  const out = notice({ ...base, text });
  out.children.push(
    el(
      'history',
      { xmlns: NS_HISTORY, visitor: lookup.visitor, sessions: String(list.length) },
      list.map((r) =>
        el(
          'session',
          {
            id: r.id,
            started: String(r.startedAt),
            ended: String(r.endedAt),
            agent: r.agent,
            reason: r.closeReason,
            ...(r.rating !== undefined ? { rating: String(r.rating) } : {}),
          },
          [el('first', {}, [firstLine(r)]), ...(r.context && !isEmptyContext(r.context) ? [contextElement(r.context)] : [])],
        ),
      ),
    ),
  );
  return out;
}
