// Sharing files in a channel: the composer's attach button, pasting a
// file or an image from the clipboard, dropping files on the
// conversation, and each upload on its way (a progress bar with the
// percent, the speed and the time left, and a cancel button; the node's
// reason when it refuses). The bytes go to the node as the request's body
// (POST /channels/{name}/files) with XMLHttpRequest, whose upload
// progress `fetch` does not report. The text in the message box, if any,
// goes with the (first) file as its caption. Also the progress pieces the
// timeline's downloads use (file-view.js): `Meter` and `transferBar`.

import { enc } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { humanSize, humanDuration } from './format.js';

// How far back the speed is measured.
const RATE_WINDOW_MS = 3000;

// Speed and time left of one transfer, from the bytes done over time.
export class Meter {
  constructor(total) {
    this.total = total;
    this.samples = [];
  }

  add(done, now = performance.now()) {
    this.samples.push([now, done]);
    // Keep one sample older than the window, so the span covers it.
    while (this.samples.length > 2 && now - this.samples[1][0] > RATE_WINDOW_MS) this.samples.shift();
  }

  get done() {
    return this.samples.length ? this.samples[this.samples.length - 1][1] : 0;
  }

  // Bytes per second, once there is enough to tell.
  rate() {
    if (this.samples.length < 2) return null;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    if (t1 - t0 < 200 || b1 <= b0) return null;
    return ((b1 - b0) * 1000) / (t1 - t0);
  }

  // "42% · 12 MB of 30 MB · 3.1 MB/s · 6 s left"
  text() {
    const done = this.done;
    const parts = [`${percent(done, this.total)}%`, `${humanSize(done)} of ${humanSize(this.total)}`];
    const r = this.rate();
    if (r && done < this.total) parts.push(`${humanSize(r)}/s`, `${humanDuration((this.total - done) / r)} left`);
    return parts.join(' · ');
  }
}

export function percent(done, total) {
  if (!total) return 100;
  return Math.min(100, Math.floor((done * 100) / total));
}

// A progress bar named `label` with its words under it (kept out of the
// conversation's live region: they change several times a second).
// `update(meter)` moves both.
export function transferBar(label, meter, cls = '') {
  const bar = h('progress', { class: 'xfer-bar', max: String(meter.total || 1), 'aria-label': label });
  const words = h('span', { class: 'xfer-text', 'aria-live': 'off' });
  const el = h('div', { class: `xfer ${cls}`.trim() }, bar, words);
  const update = (m) => {
    bar.value = Math.min(m.done, m.total || 1);
    bar.setAttribute('aria-valuetext', m.text());
    words.textContent = m.text();
  };
  update(meter);
  return { el, update };
}

let nextId = 1;

// The uploads of every channel, one at a time in the order chosen.
export class Uploads {
  // `sent(row)`: a message the node now has (merge and draw it);
  // `keepBottom(draw)`: draws, the conversation kept at its newest
  // message if it was there (the list of uploads takes room from it).
  constructor(deps) {
    this.deps = deps;
    this.list = [];
    this.composer = null; // { channel, takeCaption, putBack, focus }
    this.slot = null;
    this.running = null;
    window.addEventListener('beforeunload', (e) => {
      if (this.list.some((u) => u.state === 'sending' || u.state === 'waiting')) e.preventDefault();
    });
  }

  // The message box of a channel files may be shared in now (or null:
  // none, a visitor's, a channel not joined). `takeCaption()`: its text,
  // emptied (null when too long to send: it says so); `putBack(text)`.
  bind(composer) {
    this.composer = composer;
  }

  // The attach button and its (hidden) file picker.
  button() {
    const input = h('input', {
      type: 'file', multiple: true, hidden: true, id: 'attach-input',
      onchange: () => {
        const files = [...input.files];
        input.value = '';
        if (files.length) this.share(files);
      },
    });
    const btn = h('button', {
      type: 'button', class: 'attach-btn', id: 'attach-button', 'aria-label': 'Attach a file',
      title: 'Attach a file (you can also paste one, or drop it here)', onclick: () => input.click(),
    }, icon('clip'));
    return [input, btn];
  }

  // Files pasted into the box (`e`, a paste event): shared instead of
  // pasted as text. Whether it took them.
  paste(e) {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (!files.length || !this.composer) return false;
    e.preventDefault();
    this.share(files);
    return true;
  }

  // Drops onto `area` (the conversation) share files in the open channel;
  // while files are dragged over it, it says where they would go.
  dropArea(area) {
    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    const overlay = h('div', { class: 'drop-overlay', 'aria-hidden': 'true' },
      h('div', { class: 'drop-card' }, icon('upload'), h('span', { class: 'drop-text' })));
    area.append(overlay);
    const show = (on) => {
      area.classList.toggle('dropping', on);
      if (on && this.composer) overlay.querySelector('.drop-text').textContent = `Drop to share in #${this.composer.channel}`;
    };
    area.addEventListener('dragenter', (e) => {
      if (!hasFiles(e) || !this.composer) return;
      e.preventDefault();
      depth++;
      show(true);
    });
    area.addEventListener('dragover', (e) => {
      if (!hasFiles(e) || !this.composer) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    area.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) show(false);
    });
    area.addEventListener('drop', (e) => {
      depth = 0;
      show(false);
      if (!hasFiles(e)) return;
      e.preventDefault();
      const files = [...e.dataTransfer.files];
      if (files.length && this.composer) this.share(files);
    });
  }

  // Shares `files` in the bound composer's channel, the box's text with
  // the first.
  share(files) {
    const c = this.composer;
    if (!c) return;
    const caption = c.takeCaption();
    if (caption === null) return;
    files.forEach((file, i) => {
      this.list.push({
        id: nextId++, channel: c.channel, file, caption: i === 0 ? caption : '',
        state: 'waiting', error: '', xhr: null, meter: new Meter(file.size), view: null,
      });
    });
    announce(files.length === 1 ? `Uploading ${files[0].name}` : `Uploading ${files.length} files`);
    this.draw();
    this.next();
  }

  next() {
    if (this.running) return;
    const up = this.list.find((u) => u.state === 'waiting');
    if (up) this.send(up);
  }

  send(up) {
    this.running = up;
    up.state = 'sending';
    up.error = '';
    up.meter = new Meter(up.file.size);
    up.meter.add(0);
    const q = new URLSearchParams({ name: up.file.name || 'file', type: up.file.type || '' });
    if (up.caption) q.set('caption', up.caption);
    const xhr = new XMLHttpRequest();
    up.xhr = xhr;
    xhr.open('POST', `/api/v1/channels/${enc(up.channel)}/files?${q}`);
    xhr.setRequestHeader('X-Segchat', '1');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      up.meter.add(e.loaded);
      if (up.view) up.view.update(up);
    };
    // Every byte is with the node: it is storing the file and signing
    // the message.
    xhr.upload.onload = () => {
      up.meter.add(up.file.size);
      up.state = 'finishing';
      if (up.view) up.view.update(up);
    };
    const done = () => {
      up.xhr = null;
      if (this.running === up) this.running = null;
      this.next();
    };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && data && data.message) {
        this.forget(up);
        announce(`Shared ${up.file.name}`);
        this.deps.sent(data.message);
      } else {
        const why = (data && (data.reason || data.error)) || `the node answered ${xhr.status} ${xhr.statusText}`.trim();
        this.fail(up, why);
      }
      done();
    };
    xhr.onerror = () => {
      this.fail(up, 'the upload broke off: your node did not answer (is it still running?)');
      done();
    };
    xhr.onabort = () => {
      this.forget(up);
      announce(`Upload of ${up.file.name} cancelled`);
      done();
    };
    this.draw();
    xhr.send(up.file);
  }

  fail(up, why) {
    up.state = 'failed';
    up.error = why;
    // The caption goes back to the box, unless something else is there.
    if (up.caption && this.composer && this.composer.channel === up.channel) this.composer.putBack(up.caption);
    up.caption = '';
    this.draw();
    const err = this.slot && this.slot.querySelector(`.upload[data-upload="${up.id}"] .upload-error`);
    if (!err) announce(`Not shared: ${up.file.name}: ${why}`);
  }

  // Cancels an upload (a failed one: dismisses it).
  cancel(up) {
    if (up.xhr) up.xhr.abort(); // onabort forgets it
    else {
      this.forget(up);
      if (up.state !== 'failed') announce(`Upload of ${up.file.name} cancelled`);
    }
    if (this.composer) this.composer.focus();
  }

  retry(up) {
    const c = this.composer;
    if (c && c.channel === up.channel) {
      const caption = c.takeCaption();
      if (caption === null) return;
      up.caption = caption;
    }
    up.state = 'waiting';
    up.error = '';
    this.draw();
    this.next();
  }

  forget(up) {
    this.list = this.list.filter((u) => u !== up);
    this.draw();
  }

  // ------------------------------------------------------------ drawing

  // Draws the open channel's uploads into `slot` (the composer's), or
  // again where they were.
  draw(slot = this.slot, channel = this.composer && this.composer.channel) {
    this.slot = slot;
    if (!slot) return;
    const mine = this.list.filter((u) => u.channel === channel);
    for (const u of this.list) u.view = null;
    const hadFocus = slot.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = hadFocus && hadFocus.dataset.key;
    this.deps.keepBottom(() => clear(slot, mine.length ? h('ul', { class: 'uploads', 'aria-label': 'Uploads' }, mine.map((u) => this.item(u))) : null));
    if (hadFocus) {
      const again = focusKey && slot.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
      else if (this.composer) this.composer.focus();
    }
  }

  item(up) {
    const name = up.file.name || 'file';
    const key = (what) => `${what}-${up.id}`;
    const failed = up.state === 'failed';
    const bar = transferBar(`Uploading ${name}`, up.meter, 'upload-xfer');
    const status = h('span', { class: 'upload-note' });
    const update = (u) => {
      bar.update(u.meter);
      status.textContent = u.state === 'waiting' ? 'Waiting…' : u.state === 'finishing' ? 'Sharing…' : '';
    };
    up.view = { update };
    const li = h('li', { class: `upload ${up.state}`, dataset: { upload: up.id, state: up.state } },
      icon('file'),
      h('div', { class: 'upload-main' },
        h('div', { class: 'upload-head' },
          h('span', { class: 'upload-name' }, name),
          h('span', { class: 'upload-size' }, humanSize(up.file.size)),
          status),
        failed ? h('p', { class: 'upload-error', role: 'alert' }, `Not shared: ${up.error}`) : bar.el),
      h('div', { class: 'upload-actions' },
        failed ? h('button', { type: 'button', class: 'btn small', dataset: { key: key('retry') }, onclick: () => this.retry(up) }, 'Try again') : null,
        h('button', {
          type: 'button', class: 'icon-btn small', dataset: { key: key('cancel') },
          'aria-label': failed ? `Dismiss ${name}` : `Cancel the upload of ${name}`, title: failed ? 'Dismiss' : 'Cancel upload',
          onclick: () => this.cancel(up),
        }, icon('close'))));
    update(up);
    return li;
  }
}
