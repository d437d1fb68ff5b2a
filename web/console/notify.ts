// Notifications for a console a team keeps open all day: when a visitor writes and the agent is not looking (the
// tab is hidden, or another conversation is shown), a short beep (WebAudio, no asset) and, once the agent allowed
// it with the button, a desktop notification (Notification API). The title badge "(n) …" is console.ts's unread
// total. Clicking the notification brings the console back to that conversation.
import { h } from '../shared/consult.js';
import { hooks } from './hooks.js';

let audio: AudioContext | undefined;

/** A 180 ms, 880 Hz beep; silently nothing where audio is not allowed yet (no user gesture so far). */
function beep(): void {
  try {
    audio ??= new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.18);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.2);
  } catch {
    // no audio: the badge and the notification still tell
  }
}

const supported = () => typeof Notification !== 'undefined';

function desktop(shop: string, visitor: string, text: string): void {
  if (!supported() || Notification.permission !== 'granted') return;
  const n = new Notification(`${visitor.split('@')[0]} · ${shop.split('@')[0]}`, {
    body: text.length > 140 ? `${text.slice(0, 139)}…` : text,
    tag: `${shop}|${visitor}`, // one per conversation: a newer line replaces the older one
  });
  n.onclick = () => {
    window.focus();
    (document.querySelector(`#tabs [role="tab"][data-visitor="${CSS.escape(visitor)}"]`) as HTMLElement | null)?.click();
    n.close();
  };
}

/** The header button asking for permission; gone once granted or denied. */
function permissionButton(): void {
  if (!supported() || Notification.permission !== 'default') return;
  const b = h('button', { type: 'button', id: 'notify-permission', class: 'small' }, 'Enable desktop notifications');
  b.addEventListener('click', async () => {
    await Notification.requestPermission().catch(() => 'denied');
    if (Notification.permission !== 'default') b.remove();
  });
  document.querySelector('.top')?.append(b);
}

permissionButton();
hooks.onIncoming((shop, visitor, text) => {
  beep();
  desktop(shop, visitor, text);
});
