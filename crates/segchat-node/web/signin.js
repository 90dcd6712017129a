// The sign-in screen: sign in, create an account, or continue as a
// visitor. Errors are the node's reasons, shown next to the form.

import { api } from './api.js';
import { h, clear, announce } from './dom.js';

// The server's rule (segchat-proto's MIN_PASSWORD_LEN), shown before it
// would refuse.
const MIN_PASSWORD = 8;

const TABS = [
  { id: 'login', label: 'Sign in' },
  { id: 'register', label: 'Create account' },
  { id: 'visit', label: 'Visit' },
];

// Set once someone signed in or registered in this browser; until then
// the screen opens on "Create account" (a first visit has no account).
const KNOWN = 'segchat.known-user';

function knownUser() {
  try { return localStorage.getItem(KNOWN); } catch { return null; }
}

export function renderSignIn(root, ctx) {
  const known = knownUser();
  let tab = ctx.tab || (known ? 'login' : 'register');
  let busy = false;
  const errorBox = h('p', { class: 'form-error', role: 'alert', id: 'signin-error' });
  const serverLine = h('p', { class: 'server-line' });
  const body = h('div', { class: 'auth-body' });
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'How to enter' });

  function setServer(connected) {
    clear(serverLine,
      h('span', { class: `dot ${connected ? 'online' : 'offline'}`, 'aria-hidden': 'true' }),
      connected
        ? `Connected to the server ${ctx.node.server_addr}`
        : `Can't reach the server ${ctx.node.server_addr} — retrying. Signing in needs it.`);
  }

  function showError(msg) {
    errorBox.textContent = msg || '';
    if (msg) announce(msg);
  }

  function field(id, label, attrs) {
    return h('div', { class: 'field' },
      h('label', { for: id }, label),
      h('input', { id, name: id, 'aria-describedby': 'signin-error', ...attrs }));
  }

  function draw() {
    clear(tabs, TABS.map((t) => h('button', {
      type: 'button', role: 'tab', id: `tab-${t.id}`, class: 'tab',
      'aria-selected': String(t.id === tab), tabindex: t.id === tab ? '0' : '-1',
      'aria-controls': 'auth-panel',
      onclick: () => { tab = t.id; showError(''); draw(); focusFirst(); },
      onkeydown: (e) => {
        const i = TABS.findIndex((x) => x.id === tab);
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
          e.preventDefault();
          tab = TABS[(i + (e.key === 'ArrowRight' ? 1 : TABS.length - 1)) % TABS.length].id;
          draw();
          document.getElementById(`tab-${tab}`).focus();
        }
      },
    }, t.label)));
    let form;
    if (tab === 'visit') {
      form = h('form', { class: 'auth-form', onsubmit: submit },
        h('p', { class: 'hint' }, 'Read public channels that welcome visitors, without an account. Visitors cannot write.'),
        field('display_name', 'Your name', { autocomplete: 'nickname', required: true, maxlength: '32', placeholder: 'e.g. Sam' }),
        h('button', { class: 'btn primary wide', type: 'submit' }, 'Continue as visitor'));
    } else {
      const reg = tab === 'register';
      form = h('form', { class: 'auth-form', onsubmit: submit },
        field('username', 'Username', { autocomplete: 'username', required: true, minlength: '3', maxlength: '32', autocapitalize: 'none', spellcheck: 'false', value: !reg && known ? known : '' }),
        reg ? h('p', { class: 'hint', id: 'username-rule' }, 'Username: 3–32 letters, digits, “_”, “-” or “.”.') : null,
        field('password', 'Password', { type: 'password', autocomplete: reg ? 'new-password' : 'current-password', required: true, ...(reg ? { minlength: String(MIN_PASSWORD), 'aria-describedby': 'password-rule signin-error' } : {}) }),
        reg ? h('p', { class: 'hint', id: 'password-rule' }, `Password: at least ${MIN_PASSWORD} characters.`) : null,
        h('button', { class: 'btn primary wide', type: 'submit' }, reg ? 'Create account' : 'Sign in'));
    }
    clear(body, h('div', { id: 'auth-panel', role: 'tabpanel', 'aria-labelledby': `tab-${tab}` }, form, errorBox));
  }

  function focusFirst() {
    const first = body.querySelector('input');
    if (first) first.focus();
  }

  async function submit(e) {
    e.preventDefault();
    if (busy) return;
    const data = Object.fromEntries(new FormData(e.target).entries());
    const button = e.target.querySelector('button[type=submit]');
    busy = true;
    button.disabled = true;
    showError('');
    try {
      let session;
      if (tab === 'visit') session = await api('POST', '/session/visit', { display_name: data.display_name.trim() });
      else {
        if (tab === 'register' && [...data.password].length < MIN_PASSWORD) {
          throw new Error(`A password has at least ${MIN_PASSWORD} characters.`);
        }
        session = await api('POST', `/session/${tab}`, { username: data.username.trim(), password: data.password });
        try { localStorage.setItem(KNOWN, session.username); } catch { /* private mode */ }
      }
      ctx.onSignedIn(session);
    } catch (err) {
      showError(err.reason || err.message);
      button.disabled = false;
    } finally {
      busy = false;
    }
  }

  const card = h('main', { class: 'auth-card', 'aria-labelledby': 'auth-title' },
    h('div', { class: 'brand' }, h('img', { src: '/assets/favicon.svg', alt: '', width: '48', height: '48' }),
      h('div', {}, h('h1', { id: 'auth-title' }, 'Welcome to segchat'),
        h('p', { class: 'muted' }, 'Chat hosted by the people in it.'))),
    tabs, body, serverLine);
  clear(root, h('div', { class: 'auth-screen' }, card));
  root.className = 'auth';
  draw();
  setServer(ctx.node.server_connected);
  focusFirst();
  return { setServer, showError };
}

// Shown when the page has no valid token cookie.
export function renderNoToken(root, refused) {
  root.className = 'auth';
  clear(root, h('div', { class: 'auth-screen' },
    h('main', { class: 'auth-card', 'aria-labelledby': 'auth-title' },
      h('div', { class: 'brand' }, h('img', { src: '/assets/favicon.svg', alt: '', width: '48', height: '48' }),
        h('h1', { id: 'auth-title' }, refused ? 'That link has expired' : 'Open the link from your terminal')),
      h('p', {}, 'For your safety this page only works when opened with the link your node printed, for example:'),
      h('pre', { class: 'code' }, 'web UI: http://127.0.0.1:PORT/?token=…'),
      h('p', { class: 'muted' }, 'A node keeps its link across restarts, unless its last port was taken or its data directory is new. Run `segchat up` (or `segchat node`) and open the “web UI” line it prints.'))));
}
