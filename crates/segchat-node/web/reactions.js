// Reactions: the chips under a message (emoji, count, who in the title,
// mine marked; a click toggles mine) and the small picker of common
// emoji the React action opens. The node answers each change with the
// message as it now is; everyone else gets a `message_updated` event
// (`direct_message_updated` in a direct message).

import { api, enc } from './api.js';
import { h } from './dom.js';
import { displayName } from './format.js';

// The picker's emoji, with the names screen readers say.
export const EMOJI = [
  ['👍', 'thumbs up'], ['❤️', 'heart'], ['😂', 'tears of joy'], ['🎉', 'party'],
  ['😮', 'surprised'], ['😢', 'sad'], ['👀', 'eyes'], ['✅', 'check mark'],
];
const NAMES = new Map(EMOJI);

const who = (users, me) => users.map((u) => (u === me ? 'you' : displayName(u)));

// "alice, bob and you", at most `max` names.
function people(list, max = 12) {
  const shown = list.slice(0, max);
  const more = list.length - shown.length;
  if (more > 0) return `${shown.join(', ')} and ${more} more`;
  if (shown.length < 2) return shown.join('');
  return `${shown.slice(0, -1).join(', ')} and ${shown[shown.length - 1]}`;
}

// The chips of `m`'s reactions, or null when it has none.
export function reactionChips(m, me, onToggle) {
  const list = (m.reactions || []).filter((r) => r.count > 0);
  if (!list.length) return null;
  return h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' },
    list.map((r) => {
      const names = people(who(r.users || [], me));
      const name = NAMES.get(r.emoji) || r.emoji;
      return h('button', {
        type: 'button',
        class: `reaction${r.me ? ' mine' : ''}`,
        'aria-pressed': String(!!r.me),
        'aria-label': `${name}, ${r.count} reaction${r.count === 1 ? '' : 's'}${names ? ` by ${names}` : ''}${r.me ? '; press to take yours back' : '; press to react too'}`,
        title: names ? `${names} reacted with ${r.emoji}` : r.emoji,
        dataset: { emoji: r.emoji },
        onclick: () => onToggle(r.emoji, !r.me),
      }, h('span', { class: 'reaction-emoji', 'aria-hidden': 'true' }, r.emoji),
      h('span', { class: 'reaction-count', 'aria-hidden': 'true' }, String(r.count)));
    }));
}

// The picker for message `m`: a row of emoji buttons. Arrow keys move
// along it, Escape closes it (`onClose`); a pick calls `onPick(emoji)`.
export function reactionPicker(m, onPick, onClose) {
  const mine = new Set((m.reactions || []).filter((r) => r.me).map((r) => r.emoji));
  const el = h('div', {
    class: 'emoji-picker', role: 'group', 'aria-label': 'Pick a reaction', id: `picker-${m.id}`,
    onkeydown: (e) => {
      const buttons = [...el.querySelectorAll('button')];
      const i = buttons.indexOf(document.activeElement);
      let next = null;
      if (e.key === 'ArrowRight' || e.key === 'ArrowDown') next = buttons[(i + 1) % buttons.length];
      else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') next = buttons[(i - 1 + buttons.length) % buttons.length];
      else if (e.key === 'Home') next = buttons[0];
      else if (e.key === 'End') next = buttons[buttons.length - 1];
      else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); onClose(); return; }
      else return;
      e.preventDefault();
      e.stopPropagation();
      next.focus();
    },
  },
  EMOJI.map(([emoji, name]) => h('button', {
    type: 'button', class: `emoji-btn${mine.has(emoji) ? ' mine' : ''}`,
    'aria-label': mine.has(emoji) ? `${name} (yours; press to take it back)` : `React with ${name}`,
    title: name, dataset: { emoji },
    onclick: () => onPick(emoji, !mine.has(emoji)),
  }, emoji)),
  h('button', { type: 'button', class: 'emoji-btn close', 'aria-label': 'Close the reaction picker', title: 'Close', onclick: onClose }, '×'));
  return el;
}

// Adds (`on`) or takes back my `emoji` on the message at `path` in the
// node's API; answers the message row.
export async function setReaction(path, emoji, on) {
  const r = await api(on ? 'PUT' : 'DELETE', `${path}/reactions/${enc(emoji)}`);
  return r && r.message;
}
