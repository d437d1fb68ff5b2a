// QChat's message kinds beyond text, read from a message's <body>: its msgType, the message a revoke takes back, and
// the URLs a photo, file, voice, video or product card carries (what the archive keeps of them).
//
// The formats, as QChat/Startalk clients write them (reference only):
// - revoke: type='revoke', body msgType -1 (chat) or -2 (consult), the body id is the revoked message's id, the text
//   JSON {"messageId","message":"revoke a message","fromId"} (qunarcorp/startalk_web_sdk src/sdk/entry.js
//   `revokeMsg`; startalkIM/ejabberd src/revoke.erl reads "messageId", src/qtalk_public.erl `make_revoke_packet`).
// - photo (3) and image (30): inline `[obj type="image" value="<url>" width=W height=H]` in the text
//   (qunarcorp/startalk_pc_v2 UIChatViewPlug/ChatViewMainPanel.cpp); also inside text messages (1).
// - file (5): JSON {"FILEID","FileName","FileSize","FILEMD5","HttpUrl"} as text and as the body's extendInfo
//   (same file); voice (2): JSON with "HttpUrl" and "Seconds" (UIChatViewPlug/MessageItems/VoiceMessageItem.cpp);
//   small video (32): JSON with "ThumbUrl", "FileUrl", "Width", "Height", "Duration" (VideoMessageItem.cpp).
// - note / product card (11): extendInfo JSON {"data":{"title","price","imageUrl","webDtlUrl",…}}
//   (NoteMessageItem.cpp); msgType numbers from entity/im_message.h.
import { findChild, textOf, type XmlElement } from './xml.js';

export const MSG_TEXT = '1';
export const MSG_REVOKE = '-1';
export const MSG_CONSULT_REVOKE = '-2';

/** The most URLs a line keeps, and the longest one: a card is a few links, not a store. */
const MAX_URLS = 8;
const MAX_URL_LENGTH = 2048;
const MAX_DEPTH = 6;

/** What a transcript line keeps of a message besides its text: its body id, its kind when not text, its URLs. */
export interface BodyFacts {
  id?: string;
  msgType?: string;
  urls?: string[];
}

/** A message's msgType ('1', text, when absent). */
export function msgTypeOf(message: XmlElement): string {
  return findChild(message, 'body')?.attrs.msgType || MSG_TEXT;
}

/**
 * The id of the message a revoke takes back: "messageId" of its JSON text, else its body id (clients write both the
 * same). Undefined when it names none.
 */
export function revokedId(message: XmlElement): string | undefined {
  const body = findChild(message, 'body');
  if (!body) return undefined;
  const json = parseJson(textOf(body));
  const named = json && typeof json === 'object' && 'messageId' in json ? (json as { messageId: unknown }).messageId : undefined;
  if (typeof named === 'string' && named) return named;
  return body.attrs.id || undefined;
}

/** The facts a transcript line keeps; only what is there (a plain text line carries its id alone). */
export function bodyFacts(message: XmlElement): BodyFacts {
  const body = findChild(message, 'body');
  if (!body) return {};
  const facts: BodyFacts = {};
  if (body.attrs.id) facts.id = body.attrs.id;
  const msgType = body.attrs.msgType || MSG_TEXT;
  if (msgType !== MSG_TEXT) facts.msgType = msgType;
  const urls = urlsOf(body, msgType);
  if (urls.length) facts.urls = urls;
  return facts;
}

/**
 * The URLs of a body: `[obj … value="…"]` in its text, and the http(s) strings of its JSON text and extendInfo. Plain
 * text costs one `includes` (the hot path); JSON is read only for kinds other than text.
 */
function urlsOf(body: XmlElement, msgType: string): string[] {
  const text = textOf(body);
  const urls = new Set<string>();
  const add = (u: string) => {
    if (urls.size < MAX_URLS && u.length <= MAX_URL_LENGTH) urls.add(u);
  };
  if (text.includes('[obj ')) {
    for (const m of text.matchAll(/\[obj\s+type="[^"]*"\s+value="([^"]+)"/g)) add(m[1]);
  }
  if (msgType !== MSG_TEXT) {
    collectUrls(parseJson(text), add, 0);
    if (body.attrs.extendInfo) collectUrls(parseJson(body.attrs.extendInfo), add, 0);
  }
  return [...urls];
}

function collectUrls(v: unknown, add: (u: string) => void, depth: number): void {
  if (depth > MAX_DEPTH || v === null || v === undefined) return;
  if (typeof v === 'string') {
    if (/^https?:\/\/\S+$/.test(v)) add(v);
    return;
  }
  if (typeof v !== 'object') return;
  for (const x of Array.isArray(v) ? v : Object.values(v)) collectUrls(x, add, depth + 1);
}

function parseJson(text: string): unknown {
  const t = text.trim();
  if (!t.startsWith('{') && !t.startsWith('[')) return undefined;
  try {
    return JSON.parse(t);
  } catch {
    return undefined;
  }
}
