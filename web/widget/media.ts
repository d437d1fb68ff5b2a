// The widget's typing notifications and attachments (shared/chatstates.ts, shared/upload.ts), hooked into
// widget.ts: an attach button in the form, a "typing…" line above it, chat states to the shop while the visitor
// types, and files uploaded to the visitor vhost's upload service and sent as attachment messages.
import { xml, type XmppClient } from '@xmpp/client';
import { typingIndicator, typingNotifier } from '../shared/chatstates.js';
import { CHANNEL_SEND, h, NS_CHATSTATES, type WebConfig } from '../shared/consult.js';
import { attachControl, attachmentBody, attachmentElement, isImageFile, uploadFile, uploadOrigin } from '../shared/upload.js';

export interface Attachment {
  url: string;
  image: boolean;
}

export interface WidgetMediaHooks {
  form: HTMLFormElement;
  input: HTMLTextAreaElement;
  /** The element the typing line goes before (the form). */
  before: HTMLElement;
  client(): XmppClient | undefined;
  config(): WebConfig | undefined;
  online(): boolean;
  /** Where the visitor's messages go: the shop, the visitor, the agent who answered last (or the shop). */
  address(): { shop: string; me: string; realto: string };
  /** Sends a message with this body text and attachment, as the visitor's own line. */
  sendAttachment(text: string, attachment: Attachment): boolean;
  /** A line of the widget's own (errors). */
  notice(text: string): void;
}

export function widgetMedia(o: WidgetMediaHooks) {
  const typing = typingIndicator('cw-typing');
  o.before.before(typing.el);

  const notifier = typingNotifier((state) => {
    const x = o.client();
    if (!x || !o.online()) return;
    const { shop, me, realto } = o.address();
    const el = xml(
      'message',
      { type: 'consult', to: shop, realfrom: me, realto, channelid: CHANNEL_SEND, qchatid: '4' },
      xml(state, { xmlns: NS_CHATSTATES }),
    );
    void x.send(el).catch(() => undefined);
  });
  o.input.addEventListener('input', () => notifier.input(o.input.value));

  const attach = attachControl(
    o.form,
    {
      inputId: 'cw-file',
      inputClass: 'cw-sr',
      buttonClass: 'cw-attach',
      buttonLabel: '发送图片或文件 Attach a file',
      accept: 'image/*,.pdf,.txt,.zip',
    },
    (f) => void upload(f),
  );

  async function upload(f: File): Promise<void> {
    const x = o.client();
    const cfg = o.config();
    if (!x || !cfg || !o.online()) return o.notice('未连接 Not connected: try again in a moment');
    attach.disabled = true;
    attach.setAttribute('aria-busy', 'true');
    try {
      const url = await uploadFile(x, `upload.${cfg.visitorDomain}`, f);
      const image = isImageFile(f);
      o.sendAttachment(attachmentBody(url, image).text, { url, image });
    } catch (e) {
      o.notice((e as Error).message);
    } finally {
      attach.disabled = false;
      attach.removeAttribute('aria-busy');
    }
  }

  return {
    /** The other side's chat state (any message from the shop); a message with a body ends the typing line. */
    chatState(state: Parameters<typeof typing.set>[0] | undefined, hasBody: boolean): void {
      if (state) typing.set(state);
      else if (hasBody) typing.clear();
    },
    /** The visitor's message went: its `active` ends composing. */
    sent: () => notifier.sent(),
    /** An attachment as shown in a line. */
    element(a: Attachment): HTMLElement {
      const cfg = o.config();
      return attachmentElement(a.url, a.image, cfg ? uploadOrigin(cfg.service) : '', 'cw-file-link');
    },
  };
}
