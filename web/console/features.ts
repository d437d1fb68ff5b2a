// The agent's day-to-day features, each in its own module, hooked into console.ts through ./hooks.ts.
import './notify.js';
import './visitor-panel.js';
import './canned.js';
import './tags-notes.js';
import './mam-history.js';
import './keyboard.js';
