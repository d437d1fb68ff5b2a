// Keyboard shortcuts between conversation tabs, from anywhere in the console: Alt+ArrowDown / Alt+ArrowUp, or
// Ctrl+] / Ctrl+[, select the next / previous tab (wrapping) and put the focus in the reply box.
const next = (ev: KeyboardEvent): number => {
  if (ev.altKey && !ev.ctrlKey && (ev.key === 'ArrowDown' || ev.key === 'ArrowUp')) return ev.key === 'ArrowDown' ? 1 : -1;
  if (ev.ctrlKey && !ev.altKey && (ev.code === 'BracketRight' || ev.code === 'BracketLeft')) return ev.code === 'BracketRight' ? 1 : -1;
  return 0;
};

document.addEventListener('keydown', (ev) => {
  const step = next(ev);
  if (!step) return;
  const all = [...document.querySelectorAll<HTMLButtonElement>('#tabs [role="tab"]')];
  if (!all.length) return;
  ev.preventDefault();
  const at = all.findIndex((b) => b.getAttribute('aria-selected') === 'true');
  const to = all[(at + step + all.length) % all.length]!;
  to.click();
  (document.querySelector('#reply-text') as HTMLTextAreaElement | null)?.focus();
});
