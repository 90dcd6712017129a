// Sharing files in a channel or a direct message: the composer's attach
// button, pasting a file or an image from the clipboard, dropping files
// on the conversation, and each upload on its way (a progress bar with
// the percent, the speed and the time left, and a cancel button; the
// node's reason when it refuses). A small file goes to the node as the
// request's body (POST /channels/{name}/files, or /dms/{users}/files,
// where the node encrypts it end to end); a large one as a
// resumable upload in parts (POST /uploads, PUT /uploads/{id}), which
// goes on from what the node holds after a cut or a "Try again". Both
// with XMLHttpRequest, whose upload progress `fetch` does not report. The text in the message box, if any,
// goes with the (first) file as its caption. Also the progress pieces the
// timeline's downloads use (file-view.js): `Meter` and `transferBar`.

import { api, enc } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { humanSize, humanDuration } from './format.js';

// Files larger than this go as a resumable upload in parts this large:
// a cut costs at most one part.
const PART = 8 * 1024 * 1024;
// Parts broken off in a row before the upload shows as failed.
const PART_TRIES = 6;

// A request that got no answer (the connection broke).
class BrokeOff extends Error {}

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

// Where files from a channel's box go, and from a direct message's.
export const inChannel = (channel) => ({ key: `#${channel}`, path: `/channels/${enc(channel)}`, label: `#${channel}` });
export const inDm = (name, title) => ({ key: `@${name}`, path: `/dms/${enc(name)}`, label: `@${title}`, dm: name });

// What a message box gives `Uploads.bind`: files go to `where` with the
// box `ta`'s text as their caption. `measure()` says { used, over } of
// the text; `grow()` fits the box to it; `tooLong(used)` says why a text
// cannot go; `emptied()` forgets the box's draft.
export function boxBinding(ta, where, { measure, grow, tooLong, emptied }) {
  return {
    where,
    // The box's text, to go with a file (emptied); null when too long.
    takeCaption: () => {
      const text = ta.value;
      if (!text.trim()) return '';
      const { used, over } = measure();
      if (over) {
        tooLong(used);
        return null;
      }
      ta.value = '';
      emptied();
      grow();
      measure();
      return text;
    },
    putBack: (text) => {
      if (ta.value || !ta.isConnected) return;
      ta.value = text;
      grow();
      measure();
    },
    focus: () => ta.focus(),
  };
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
    this.composer = null; // { where, takeCaption, putBack, focus }
    this.slot = null;
    this.running = null;
    window.addEventListener('beforeunload', (e) => {
      if (this.list.some((u) => u.state !== 'failed')) e.preventDefault();
    });
  }

  // The message box files may be shared from now (or null: none, a
  // visitor's, a channel not joined). `where`: where they go (`key`, one
  // per conversation; `path`, the API's; `label`, as shown). `takeCaption()`:
  // its text, emptied (null when too long to send: it says so);
  // `putBack(text)`.
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
      if (on && this.composer) overlay.querySelector('.drop-text').textContent = `Drop to share in ${this.composer.where.label}`;
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

  // Shares `files` where the bound composer's go, the box's text with
  // the first.
  share(files) {
    const c = this.composer;
    if (!c) return;
    const caption = c.takeCaption();
    if (caption === null) return;
    files.forEach((file, i) => {
      this.list.push({
        id: nextId++, where: c.where, file, caption: i === 0 ? caption : '',
        state: 'waiting', error: '', xhr: null, upload: null, cancelled: false, meter: new Meter(file.size), view: null,
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
    up.cancelled = false;
    up.meter = new Meter(up.file.size);
    up.meter.add(0);
    this.draw();
    const work = up.file.size > PART ? this.sendParts(up) : this.sendWhole(up);
    work.then((message) => {
      if (up.cancelled) return;
      this.forget(up);
      announce(`Shared ${up.file.name}`);
      this.deps.sent(message, up.where);
    }, (err) => {
      if (!up.cancelled) this.fail(up, err.message || String(err));
    }).finally(() => {
      up.xhr = null;
      if (this.running === up) this.running = null;
      this.next();
    });
  }

  // Shows how far `up` is, `done` bytes with the node.
  progress(up, done) {
    up.meter.add(done);
    if (up.view) up.view.update(up);
  }

  // Every byte is with the node: it is storing the file and signing the
  // message.
  finishing(up) {
    up.meter.add(up.file.size);
    up.state = 'finishing';
    if (up.view) up.view.update(up);
  }

  // The share's query: name, type, caption (and a resumable upload's id).
  shareQuery(up, upload) {
    const q = new URLSearchParams({ name: up.file.name || 'file', type: up.file.type || '' });
    if (up.caption) q.set('caption', up.caption);
    if (upload) q.set('upload', upload);
    return q;
  }

  // A small file: the request's body is the file; answers the message.
  async sendWhole(up) {
    const q = this.shareQuery(up);
    const r = await this.request(up, 'POST', `/api/v1${up.where.path}/files?${q}`, up.file,
      (loaded) => this.progress(up, loaded), () => this.finishing(up));
    if (r.ok && r.data && r.data.message) return r.data.message;
    throw new Error(r.why);
  }

  // A large file: a resumable upload, in parts of PART bytes. A part
  // that breaks off costs only itself: the node keeps what arrived, and
  // this goes on from what the node says it holds. "Try again" after a
  // failure goes on the same way.
  async sendParts(up) {
    const size = up.file.size;
    let offset = 0;
    if (up.upload) {
      try {
        offset = (await api('GET', `/uploads/${up.upload}`)).offset;
      } catch (e) {
        if (e.status !== 404) throw e;
        up.upload = null; // expired or gone: anew
      }
    }
    if (!up.upload) up.upload = (await api('POST', '/uploads', { size })).id;
    this.progress(up, offset);
    let tries = 0;
    while (offset < size) {
      const end = Math.min(offset + PART, size);
      const from = offset;
      let r = null;
      try {
        r = await this.request(up, 'PUT', `/api/v1/uploads/${up.upload}?offset=${from}`, up.file.slice(from, end),
          (loaded) => this.progress(up, from + loaded));
      } catch (e) {
        if (!(e instanceof BrokeOff)) throw e;
      }
      if (up.cancelled) throw new Error('cancelled');
      if (r && r.ok) {
        offset = r.data.offset;
        tries = 0;
        continue;
      }
      // Refused for good: say why.
      if (r && r.status !== 409 && r.status < 500) throw new Error(r.why);
      // Broken off, or out of step: wait, then ask where it stands.
      tries += 1;
      if (tries > PART_TRIES) throw new Error('the upload keeps breaking off; "Try again" goes on from where it stopped');
      up.state = 'reconnecting';
      if (up.view) up.view.update(up);
      await new Promise((res) => setTimeout(res, Math.min(8000, 250 * 2 ** tries)));
      if (up.cancelled) throw new Error('cancelled');
      try {
        offset = (await api('GET', `/uploads/${up.upload}`)).offset;
        up.state = 'sending';
        this.progress(up, offset);
      } catch (e) {
        if (e.status === 404) {
          up.upload = null;
          throw new Error('the node no longer has this upload; "Try again" sends it anew');
        }
        // The node is away: the next round tries again.
      }
    }
    this.finishing(up);
    const data = await api('POST', `${up.where.path}/files?${this.shareQuery(up, up.upload)}`);
    up.upload = null;
    return data.message;
  }

  // One request with upload progress (which `fetch` does not report),
  // kept in `up.xhr` so a cancel can abort it. Answers `{ ok, status,
  // data, why }`; rejects with BrokeOff when no answer came.
  request(up, method, url, body, onProgress, onSent) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      up.xhr = xhr;
      xhr.open(method, url);
      xhr.setRequestHeader('X-Segchat', '1');
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      if (onSent) xhr.upload.onload = onSent;
      xhr.onload = () => {
        up.xhr = null;
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        const ok = xhr.status >= 200 && xhr.status < 300;
        const why = (data && (data.reason || data.error)) || `the node answered ${xhr.status} ${xhr.statusText}`.trim();
        resolve({ ok, status: xhr.status, data, why });
      };
      xhr.onerror = () => {
        up.xhr = null;
        reject(new BrokeOff('the upload broke off: your node did not answer (is it still running?)'));
      };
      xhr.onabort = () => {
        up.xhr = null;
        reject(new Error('cancelled'));
      };
      xhr.send(body);
    });
  }

  fail(up, why) {
    up.state = 'failed';
    up.error = why;
    // The caption goes back to the box, unless something else is there.
    if (up.caption && this.here(up)) this.composer.putBack(up.caption);
    up.caption = '';
    this.draw();
    const err = this.slot && this.slot.querySelector(`.upload[data-upload="${up.id}"] .upload-error`);
    if (!err) announce(`Not shared: ${up.file.name}: ${why}`);
  }

  // Cancels an upload (a failed one: dismisses it); a resumable one's
  // parts on the node go too.
  cancel(up) {
    const wasFailed = up.state === 'failed';
    up.cancelled = true;
    if (up.xhr) up.xhr.abort();
    if (up.upload) api('DELETE', `/uploads/${up.upload}`).catch(() => { /* gone already */ });
    up.upload = null;
    this.forget(up);
    if (!wasFailed) announce(`Upload of ${up.file.name} cancelled`);
    if (this.composer) this.composer.focus();
  }

  retry(up) {
    const c = this.composer;
    if (this.here(up)) {
      const caption = c.takeCaption();
      if (caption === null) return;
      up.caption = caption;
    }
    up.state = 'waiting';
    up.error = '';
    this.draw();
    this.next();
  }

  // Whether `up` goes where the bound composer's files go.
  here(up) {
    return !!this.composer && this.composer.where.key === up.where.key;
  }

  forget(up) {
    this.list = this.list.filter((u) => u !== up);
    this.draw();
  }

  // ------------------------------------------------------------ drawing

  // Draws the open conversation's uploads into `slot` (the composer's),
  // or again where they were.
  draw(slot = this.slot, key = this.composer && this.composer.where.key) {
    this.slot = slot;
    if (!slot) return;
    const mine = this.list.filter((u) => u.where.key === key);
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
      status.textContent = { waiting: 'Waiting…', finishing: 'Sharing…', reconnecting: 'Connection lost; resuming…' }[u.state] || '';
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
