// The message list is one tab stop (WAI-ARIA's roving tabindex): Tab lands
// on one message — the last one focused, else the newest — and never walks
// every message nor scrolls to the top. Inside the list:
//
//   ↑ / ↓         previous / next message (↑ on the oldest loads older ones)
//   Home / End    oldest / newest loaded message
//   Enter, Space  show or hide where the message came from
//   Tab           into the focused message: its quote, links, spoilers,
//                 reactions and actions (reply, react, edit, delete), one
//                 by one; Shift+Tab back; past the last, out of the list
//   Escape        from inside a message back to it; from a message, back
//                 to the message box

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
  for (const b of list.querySelectorAll('article.msg button:not(.keep-tab), article.msg a[href]')) b.tabIndex = -1;
  return active;
}

// What Tab walks inside message `a`: its controls that are shown.
function controlsOf(a) {
  return [...a.querySelectorAll('button, a[href], [role=button][tabindex]')].filter((el) => {
    if (el.disabled || el.closest('[hidden]')) return false;
    if (!el.getClientRects().length) return false;
    return getComputedStyle(el).visibility !== 'hidden';
  });
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
    // Typing (the inline editor) keeps its keys.
    if (e.target.matches('textarea, input')) return;
    if (e.key === 'Tab') {
      const controls = controlsOf(a);
      const i = e.target === a ? -1 : controls.indexOf(e.target);
      let to = null;
      if (e.shiftKey) to = i > 0 ? controls[i - 1] : i === 0 ? a : null;
      else if (i + 1 < controls.length) to = controls[i + 1];
      if (to) { e.preventDefault(); to.focus(); }
      return;
    }
    if (e.target !== a && e.key === 'Escape') {
      e.preventDefault();
      a.focus();
      return;
    }
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

// Where focus is inside the list, so it can be found again after the list
// is drawn anew: the message's id and, inside it, which control (by class
// and position among its kind). Null when focus is not on a message.
export function focusAddress(list) {
  const el = document.activeElement;
  const a = el && list.contains(el) && el.closest('article.msg');
  if (!a) return null;
  if (el === a) return { id: a.dataset.id };
  const same = [...a.querySelectorAll(el.tagName)].filter((x) => x.className === el.className);
  return { id: a.dataset.id, tag: el.tagName, cls: el.className, n: same.indexOf(el) };
}

// The element at `addr` in the list as now drawn (or its message).
export function findAddress(list, addr) {
  if (!addr) return null;
  const a = list.querySelector(`article.msg[data-id="${CSS.escape(addr.id)}"]`);
  if (!a || !addr.tag) return a;
  const same = [...a.querySelectorAll(addr.tag)].filter((x) => x.className === addr.cls);
  return same[addr.n] || a;
}
