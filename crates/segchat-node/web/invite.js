// The "Invite people" dialog: what a friend needs to join this node's
// server — its address and its key — and the command to run, with a
// warning while the server can only be reached from this machine.
// Everything comes from the node's `GET /node` (`invite`).

import { api } from './api.js';
import { h, clear, icon, announce } from './dom.js';

// A read-only line with a Copy button.
function copyLine(id, label, value) {
  const input = h('input', { id, readonly: true, value, class: 'copy-input', spellcheck: 'false', 'aria-label': label });
  const btn = h('button', {
    type: 'button', class: 'btn ghost small', 'aria-label': `Copy ${label}`,
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(value);
        btn.textContent = 'Copied';
        announce(`${label} copied`);
      } catch {
        // No clipboard permission (e.g. not a secure context): selected
        // for Ctrl+C instead.
        announce(`${label} selected: press Ctrl+C to copy`);
      }
    },
  }, 'Copy');
  return h('div', { class: 'copy-line' }, input, btn);
}

export async function openInviteDialog(d, fallbackNode) {
  let node = fallbackNode;
  try { node = await api('GET', '/node'); } catch { /* show what we had */ }
  const inv = node.invite || { server_addrs: [node.server_addr], server_key: node.server_key, reach: 'remote' };
  const key = inv.server_key || '';
  const addr = inv.server_addrs[0] || '';
  const port = (node.server_addr.match(/:(\d+)$/) || [])[1] || '22236';
  const parts = [];
  if (inv.reach === 'this_machine') {
    parts.push(h('div', { class: 'banner warn inline', role: 'alert', id: 'invite-local-only' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Only this machine can reach your server. '),
        'To let friends in, stop segchat and start it with ', h('code', {}, `segchat up --listen 0.0.0.0:${port}`),
        '. Friends on other networks also need UDP and TCP port ', h('code', {}, port), ' forwarded to this machine by your router.')));
  }
  if (inv.reach === 'network' && !addr) {
    parts.push(h('p', { class: 'hint', id: 'invite-no-addr' }, `Your server listens on every interface of this machine, port ${port}; give them this machine's address on your network with that port.`));
  }
  if (addr) {
    parts.push(h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'Server address'),
      copyLine('invite-addr', 'server address', addr),
      inv.server_addrs.length > 1 ? h('p', { class: 'hint' }, `Other addresses of this machine: ${inv.server_addrs.slice(1).join(', ')}`) : null));
  }
  parts.push(h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'Server key'),
    key ? copyLine('invite-key', 'server key', key) : h('p', { class: 'hint' }, 'Not known yet: your node has not reached the server.'),
    h('p', { class: 'hint' }, 'The key proves it is your server: their node refuses any other at that address.')));
  if (addr && key) {
    const cmd = `segchat node --server ${addr} --server-key ${key}`;
    parts.push(h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'They run'),
      copyLine('invite-command', 'command', cmd),
      h('p', { class: 'hint' }, 'From a clone of segchat: ', h('code', {}, 'cargo run --release -- node --server … --server-key …'),
        '. Then they open the “web UI” link it prints and create an account.')));
  }
  const form = h('form', { method: 'dialog', class: 'dialog-form', onsubmit: (e) => { e.preventDefault(); d.close(); } },
    h('header', { class: 'dialog-head' },
      h('h2', { id: 'invite-title' }, 'Invite people'),
      h('p', { class: 'muted' }, 'Friends run their own node, connected to the same server: give them these.')),
    parts,
    h('footer', { class: 'dialog-actions' },
      h('button', { type: 'submit', class: 'btn primary', id: 'invite-done' }, 'Done')));
  d.setAttribute('aria-labelledby', 'invite-title');
  clear(d, form);
  d.showModal();
  const first = d.querySelector('#invite-addr') || d.querySelector('#invite-done');
  if (first) first.focus();
}

// "Invite to #channel": the owner or a moderator of a private channel names
// a user; the server tells that user's nodes at once (`invited`).
export function openChannelInvite(d, channel, onDone) {
  const err = h('p', { class: 'form-error', role: 'alert', id: 'invite-user-error' });
  const input = h('input', { id: 'invite-user', name: 'username', required: true, minlength: '3', maxlength: '32', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', 'aria-describedby': 'invite-user-error' });
  async function submit(e) {
    e.preventDefault();
    const username = input.value.trim();
    const btn = form.querySelector('#invite-user-submit');
    btn.disabled = true;
    try {
      await api('POST', `/channels/${encodeURIComponent(channel)}/invite`, { username });
      d.close();
      announce(`Invited ${username} to #${channel}`);
      if (onDone) onDone(username);
    } catch (ex) {
      err.textContent = ex.reason;
      btn.disabled = false;
    }
  }
  const form = h('form', { method: 'dialog', class: 'dialog-form', onsubmit: submit },
    h('header', { class: 'dialog-head' },
      h('h2', { id: 'invite-user-title' }, `Invite to #${channel}`),
      h('p', { class: 'muted' }, 'Only people you invite can see this channel. They see it at once, and join when they like.')),
    h('div', { class: 'field' }, h('label', { for: 'invite-user' }, 'Username'), input),
    err,
    h('footer', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn ghost', onclick: () => d.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn primary', id: 'invite-user-submit' }, 'Invite')));
  d.setAttribute('aria-labelledby', 'invite-user-title');
  clear(d, form);
  d.showModal();
  input.focus();
}
