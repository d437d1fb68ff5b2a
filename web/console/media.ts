// The console's typing notifications and attachments (shared/chatstates.ts, shared/upload.ts): a "typing…" line
// under the conversation while its visitor types (their chat states, relayed by the sidecar), chat states to the
// shop with realto while the agent types a reply, and an attach button that uploads to the agent domain's upload
// service and sends the file as a reply. console.ts calls `consoleMedia()` once and renders attachments with it.
import { xml } from '@xmpp/client';
import { type ChatState, chatStateOf, typingNotifier } from '../shared/chatstates.js';
import { bare, h, loadConfig, NS_CHATSTATES } from '../shared/consult.js';
import { attachControl, attachmentBody, attachmentElement, isImageFile, uploadFile, uploadOrigin } from '../shared/upload.js';
import { hooks } from './hooks.js';

export interface Attachment {
  url: string;
  image: boolean;
}

/** A "typing…" for a conversation no longer refreshed within this long is shown no more (a lost `paused`). */
const TYPING_FOR_MS = 30_000;

export function consoleMedia(o: {
  log: HTMLElement;
  replyForm: HTMLFormElement;
  replyInput: HTMLTextAreaElement;
  /** Sends a reply with this body text and attachment to the conversation shown, as the agent's own line. */
  sendAttachment(text: string, attachment: Attachment): void;
}) {
  let origin = '';
  const config = loadConfig(new URL('.', location.href)).then((c) => {
    origin = uploadOrigin(c.service);
    return c;
  });
  void config.catch(() => undefined);

  // ---- typing, from the visitors ------------------------------------------------------------
  const typing = h('p', { id: 'typing', class: 'typing', role: 'status', 'aria-live': 'polite', hidden: '' }, '正在输入 typing…');
  o.log.after(typing);
  const composing = new Map<string, ReturnType<typeof setTimeout>>(); // shop|visitor → its expiry
  const keyOf = (shop: string, visitor: string) => `${shop}|${visitor}`;
  const showTyping = () => {
    const c = hooks.api().active();
    typing.hidden = !c || !composing.has(keyOf(c.shop, c.visitor));
  };
  const setTyping = (key: string, state: ChatState | undefined) => {
    clearTimeout(composing.get(key));
    composing.delete(key);
    if (state === 'composing')
      composing.set(
        key,
        setTimeout(() => {
          composing.delete(key);
          showTyping();
        }, TYPING_FOR_MS),
      );
    showTyping();
  };
  hooks.onStanza((el) => {
    const realfrom = bare(el.attrs.realfrom);
    const shop = bare(el.attrs.from);
    // Only a visitor's own consult traffic (qchatid 4: realfrom is the visitor) says whether it types.
    if (!realfrom || el.attrs.qchatid !== '4' || !hooks.api().shops().includes(shop)) return false;
    const state = chatStateOf(el);
    const body = el.getChild('body');
    if (!body && state) {
      setTyping(keyOf(shop, realfrom), state);
      return true; // nothing else to show
    }
    if (body && el.attrs.type !== 'readmark') setTyping(keyOf(shop, realfrom), undefined); // the message came
    return false;
  });
  hooks.onShown(() => showTyping());

  // ---- typing, to the visitor ---------------------------------------------------------------
  const notifier = typingNotifier((state) => {
    const x = hooks.client();
    const c = hooks.api().active();
    if (!x || !c || c.closed) return;
    void x
      .send(xml('message', { to: c.shop, realto: c.visitor, type: 'chat' }, xml(state, { xmlns: NS_CHATSTATES })))
      .catch(() => undefined);
  });
  o.replyInput.addEventListener('input', () => notifier.input(o.replyInput.value));

  // ---- attachments --------------------------------------------------------------------------
  const attach = attachControl(
    o.replyForm,
    { inputId: 'reply-file', inputClass: 'sr', buttonClass: 'attach', buttonLabel: 'Attach a file' },
    (f) => void upload(f),
  );
  async function upload(f: File): Promise<void> {
    const x = hooks.client();
    const c = hooks.api().active();
    if (!x || !c || c.closed) return hooks.api().notice('No open conversation to send the file to');
    attach.disabled = true;
    attach.setAttribute('aria-busy', 'true');
    try {
      const domain = hooks.api().me().split('@')[1] ?? (await config).domain;
      const url = await uploadFile(x, `upload.${domain}`, f);
      const image = isImageFile(f);
      o.sendAttachment(attachmentBody(url, image).text, { url, image });
    } catch (e) {
      hooks.api().note(c.shop, c.visitor, (e as Error).message);
    } finally {
      attach.disabled = false;
      attach.removeAttribute('aria-busy');
    }
  }

  return {
    /** The agent's reply went: its `active` ends composing. */
    sent: () => notifier.sent(),
    /** An attachment as shown in a line: inline image or link (upload service origin only), else its URL as text. */
    element: (a: Attachment) => attachmentElement(a.url, a.image, origin, 'file-link'),
  };
}
