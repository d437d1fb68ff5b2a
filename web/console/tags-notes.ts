// Tags and notes on the shown conversation: `/tag <label …>` and `/note <text>` to the shop with realto
// (src/routing/notes.ts). The shop answers the agent alone (the tags now, "note kept"), shown in the notices; a
// note never reaches the visitor. The line stays in the conversation for the agent, marked as a note.
import { agentMessage, newId } from '../shared/consult.js';
import { hooks } from './hooks.js';

const form = document.createElement('form');
form.id = 'tag-note';
form.className = 'tag-note';
const label = document.createElement('label');
label.htmlFor = 'tag-note-text';
label.textContent = 'Tag or note';
const text = document.createElement('input');
text.id = 'tag-note-text';
text.placeholder = 'vip, refund… or a note for the team';
const tagBtn = document.createElement('button');
tagBtn.type = 'submit';
tagBtn.value = 'tag';
tagBtn.textContent = 'Add tag';
const noteBtn = document.createElement('button');
noteBtn.type = 'submit';
noteBtn.value = 'note';
noteBtn.textContent = 'Add note';
form.append(label, text, tagBtn, noteBtn);
document.querySelector('#chat .actions')?.append(form);

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const api = hooks.api();
  const c = api.active();
  const x = hooks.client();
  const value = text.value.trim().replace(/\s+/g, ' ');
  if (!c || !x || !value || c.closed) return;
  const kind = (ev.submitter as HTMLButtonElement | null)?.value === 'note' ? 'note' : 'tag';
  const labels = value
    .split(/[\s,]+/)
    .filter(Boolean)
    .join(' ');
  const line = kind === 'note' ? `/note ${value}` : `/tag ${labels}`;
  text.value = '';
  void x.send(agentMessage({ shop: c.shop, visitor: c.visitor, id: newId(), text: line }));
  api.note(c.shop, c.visitor, kind === 'note' ? `note: ${value}` : `tag: ${labels}`);
});

hooks.onShown((c) => {
  const closed = !c || hooks.api().active()?.closed === true;
  for (const el of [text, tagBtn, noteBtn]) el.disabled = closed;
});
