// Attachments through XEP-0363 HTTP File Upload (ejabberd's mod_http_upload, `upload.<vhost>`): ask the upload
// service for a slot, PUT the file there, and send a message that carries the GET URL in two forms: QChat's inline
// image object in the body (`msgType='3'`, `[obj type="image" value="URL"]`, as QChat clients write a photo; the
// sidecar archives its URL) or the bare URL for other files, plus an XEP-0066 OOB child (`jabber:x:oob`) that plain
// XMPP clients understand. Received attachments are read back from either form; images are shown inline only when
// their URL is on the upload service's origin (never a URL from a message elsewhere; never innerHTML).
import { xml, type XElement, type XmppClient } from '@xmpp/client';
import { h } from './consult.js';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';
export const NS_OOB = 'jabber:x:oob';
/** QChat's photo kind (src/xmpp/message-kind.ts). */
export const MSG_PHOTO = '3';
/** The widest image the pages try to show; beyond it the link is enough. */
const IMAGE_TYPES = /^image\/(png|jpeg|gif|webp)$/;

/** A refusal the visitor or agent can read. */
export class UploadError extends Error {
  constructor(
    message: string,
    readonly reason: 'too-large' | 'refused' | 'put-failed',
  ) {
    super(message);
  }
}

/** The HTTP origin of ejabberd's listener, where mod_http_upload serves: the WebSocket's (ws → http, wss → https). */
export function uploadOrigin(service: string): string {
  const u = new URL(service);
  return `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}`;
}

const megabytes = (n: number) => `${Math.round((n / 1024 / 1024) * 10) / 10} MB`;

/** XEP-0363: a slot for `file` from the upload service `service`, PUT there; resolves to the GET URL. */
export async function uploadFile(xmpp: XmppClient, service: string, file: File): Promise<string> {
  let slot: XElement | undefined;
  try {
    const res = await xmpp.iqCaller.request(
      xml(
        'iq',
        { type: 'get', to: service },
        xml('request', {
          xmlns: NS_UPLOAD,
          filename: file.name || 'file',
          size: String(file.size),
          'content-type': file.type || 'application/octet-stream',
        }),
      ),
      15_000,
    );
    slot = res.getChild('slot', NS_UPLOAD);
  } catch (e) {
    throw refusal(e);
  }
  const put = slot?.getChild('put');
  const get = slot?.getChild('get');
  if (!put?.attrs.url || !get?.attrs.url) throw new UploadError('上传失败 Upload refused: no slot', 'refused');
  const headers: Record<string, string> = { 'content-type': file.type || 'application/octet-stream' };
  // XEP-0363 allows only these three headers from the slot.
  for (const hd of put.getChildren('header'))
    if (/^(authorization|cookie|expires)$/i.test(hd.attrs.name ?? '')) headers[hd.attrs.name!] = hd.text();
  const r = await fetch(put.attrs.url, { method: 'PUT', body: file, headers, mode: 'cors', credentials: 'omit' }).catch((e: Error) => {
    throw new UploadError(`上传失败 Upload failed: ${e.message}`, 'put-failed');
  });
  if (!r.ok) throw new UploadError(`上传失败 Upload failed: HTTP ${r.status}`, 'put-failed');
  return get.attrs.url;
}

/** The upload service's error as a sentence: too large (with the limit), or whatever it said. */
function refusal(e: unknown): UploadError {
  // @xmpp/iq rejects with the <error/> element as `element`, its text as `text`.
  const err = (e as { element?: XElement }).element;
  const tooLarge = err?.getChild('file-too-large', NS_UPLOAD);
  if (tooLarge) {
    const max = Number(tooLarge.getChildText('max-file-size'));
    return new UploadError(`文件太大 File too large${max ? ` (at most ${megabytes(max)})` : ''}`, 'too-large');
  }
  const text = (e as { text?: string }).text || (e as Error).message || 'refused';
  return new UploadError(`上传失败 Upload refused: ${text}`, 'refused');
}

export const isImageFile = (file: File) => IMAGE_TYPES.test(file.type);

/** The body of an attachment message and its msgType: QChat's photo for images, the bare URL otherwise. */
export function attachmentBody(url: string, image: boolean): { text: string; msgType: string } {
  return image ? { text: `[obj type="image" value="${url}"]`, msgType: MSG_PHOTO } : { text: url, msgType: '1' };
}

/** `message` (a consult message built by shared/consult.ts) made an attachment's: its body's kind and an OOB child. */
export function asAttachment(message: XElement, url: string, image: boolean): XElement {
  const body = message.getChild('body');
  if (body) body.attrs.msgType = attachmentBody(url, image).msgType;
  message.children.push(xml('x', { xmlns: NS_OOB }, xml('url', {}, url)));
  return message;
}

/** The attachment a received message carries: its OOB URL, or the URL of an inline image object. */
export function attachmentOf(el: XElement): { url: string; image: boolean } | undefined {
  const body = el.getChild('body');
  const text = body?.text() ?? '';
  const obj = /\[obj\s+type="image"\s+value="([^"]+)"/.exec(text);
  if (obj) return { url: obj[1]!, image: true };
  const oob = el.getChild('x', NS_OOB)?.getChildText('url')?.trim();
  if (!oob) return undefined;
  return { url: oob, image: body?.attrs.msgType === MSG_PHOTO || /\.(png|jpe?g|gif|webp)$/i.test(new URL(oob, 'http://x').pathname) };
}

/** Whether `url` may be shown inline: http(s) on the upload service's origin only. */
export function showable(url: string, origin: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === origin;
  } catch {
    return false;
  }
}

/** An attachment as the page shows it: an inline <img> (a link around it) or a plain link, built without HTML. */
export function attachmentElement(url: string, image: boolean, origin: string, className: string): HTMLElement {
  if (!showable(url, origin)) return h('span', { class: `${className}-url` }, url);
  const a = h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', class: className });
  if (image) a.append(h('img', { src: url, alt: '图片 Image', loading: 'lazy', class: `${className}-img` }));
  else a.textContent = fileName(url);
  return a;
}

function fileName(url: string): string {
  const last = new URL(url).pathname.split('/').pop() || url;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** A paperclip drawn as SVG (an emoji needs a font that kiosks and servers often lack), hidden from screen readers. */
export function paperclipIcon(): SVGSVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', width: '18', height: '18', 'aria-hidden': 'true', focusable: 'false' }))
    svg.setAttribute(k, v);
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', 'M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5');
  for (const [k, v] of Object.entries({ fill: 'none', stroke: 'currentColor', 'stroke-width': '1.8', 'stroke-linecap': 'round' }))
    path.setAttribute(k, v);
  svg.appendChild(path);
  return svg;
}

/**
 * A hidden file input and the paperclip button that opens it, put before the form's submit button; each file chosen
 * goes to `onFile` (the input is emptied, so the same file can be chosen again).
 */
export function attachControl(
  form: HTMLFormElement,
  o: { inputId: string; inputClass: string; buttonClass: string; buttonLabel: string; accept?: string },
  onFile: (f: File) => void,
): HTMLButtonElement {
  const file = h('input', {
    type: 'file',
    id: o.inputId,
    class: o.inputClass,
    tabindex: '-1',
    'aria-label': 'Attach a file',
    ...(o.accept ? { accept: o.accept } : {}),
  });
  const attach = h('button', { type: 'button', class: o.buttonClass, 'aria-label': o.buttonLabel, title: 'Attach a file' });
  attach.appendChild(paperclipIcon());
  const send = form.querySelector('button[type="submit"]');
  form.insertBefore(file, send);
  form.insertBefore(attach, send);
  attach.addEventListener('click', () => file.click());
  file.addEventListener('change', () => {
    const chosen = file.files?.[0];
    file.value = '';
    if (chosen) onFile(chosen);
  });
  return attach;
}
