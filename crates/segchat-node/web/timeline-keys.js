// The message list is one tab stop (WAI-ARIA's roving tabindex): Tab lands
// on one message — the last one focused, else the newest — and never walks
// every message nor scrolls to the top. Inside the list:
//
//   ↑ / ↓         previous / next message (↑ on the oldest loads older ones)
//   Home / End    oldest / newest loaded message
//   Enter, Space  show or hide where the message came from
//   Escape        back to the message box

// Gives the message `activeId` (else the newest) the list's one tab stop;
// returns it. An empty list keeps the stop itself, so it can be scrolled.
export function roveTimeline(list, activeId) {
  const msgs = list.querySelectorAll('article.msg');
  let active = null;
  for (const a of msgs) {
    a.tabIndex = -1;
    if (a.dataset.id === activeId) active = a;
  }
  if (!active && msgs.length) active = msgs[msgs.length - 1];
  if (active) active.tabIndex = 0;
  list.tabIndex = active ? -1 : 0;
  for (const b of list.querySelectorAll('article.msg button, article.msg a[href]')) b.tabIndex = -1;
  return active;
}

// `on.setActive(id)`: remember the focused message; `on.older()`: load
// older messages (resolves once they are drawn); `on.toComposer()`.
export function timelineKeys(list, on) {
  list.addEventListener('focusin', (e) => {
    const a = e.target.closest('article.msg');
    if (a) on.setActive(a.dataset.id);
  });
  list.addEventListener('keydown', async (e) => {
    const a = e.target.closest && e.target.closest('article.msg');
    if (!a || e.altKey || e.ctrlKey || e.metaKey) return;
    const msgs = () => [...list.querySelectorAll('article.msg')];
    const all = msgs();
    const i = all.indexOf(a);
    let next = null;
    switch (e.key) {
      case 'ArrowUp':
        e.preventDefault();
        next = all[i - 1];
        if (!next && i === 0) {
          const id = a.dataset.id;
          await on.older();
          const now = msgs();
          next = now[now.findIndex((m) => m.dataset.id === id) - 1] || null;
        }
        break;
      case 'ArrowDown': e.preventDefault(); next = all[i + 1]; break;
      case 'Home': e.preventDefault(); next = all[0]; break;
      case 'End': e.preventDefault(); next = all[all.length - 1]; break;
      case 'Enter':
      case ' ': {
        if (e.target !== a) return;
        e.preventDefault();
        const details = a.querySelector('.prov');
        if (details) details.click();
        return;
      }
      case 'Escape': e.preventDefault(); on.toComposer(); return;
      default: return;
    }
    if (!next) return;
    for (const m of msgs()) m.tabIndex = -1;
    next.tabIndex = 0;
    next.focus({ preventScroll: true });
    next.scrollIntoView({ block: 'nearest' });
  });
}
