// Livestreams in the browser. Going live: the webcam (`getUserMedia`) is
// drawn onto a canvas at the chosen size, encoded as JPEG at the chosen
// quality and POSTed frame by frame to the node, paced at the chosen frame
// rate; the node sends the frames P2P to each viewer. Watching: the node
// watches the stream P2P and pushes each whole frame (binary) and the
// statistics (text, every second) over the stream's WebSocket
// (`/api/v1/streams/{id}/ws`); nothing polls.

import { api, enc } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { displayName } from './format.js';

export const SIZES = { '320x240': [320, 240], '640x480': [640, 480], '1280x720': [1280, 720] };

function streamSocket(id, { onFrame, onStats, onClose }) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/streams/${enc(id)}/ws`);
  ws.binaryType = 'blob';
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      try { onStats(JSON.parse(e.data)); } catch { /* not JSON */ }
    } else if (onFrame) onFrame(e.data);
  };
  ws.onclose = () => onClose && onClose();
  return ws;
}

function ms(us) {
  return us ? `${Math.round(us / 1000)} ms` : '—';
}

export function lossPercent(report) {
  const total = report.frames + report.lost;
  return total ? (100 * report.lost) / total : 0;
}

// Why the browser could not open the camera, in words.
function cameraReason(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') return 'The browser was not allowed to use the camera. Allow camera access for this page and try again.';
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No camera was found.';
  if (name === 'NotReadableError') return 'The camera is in use by another program.';
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return 'This browser cannot capture video here.';
  return `The camera could not be opened: ${(e && e.message) || e}`;
}

// The stream area above the timeline. `ctx()` says who we are and where:
// {channel, canWrite, writeReason, me}. `live` is the list of live streams
// (StreamInfo) this UI knows of.
export class StreamArea {
  constructor(el, ctx, onChange) {
    this.el = el;
    this.ctx = ctx;
    this.onChange = onChange;
    this.live = new Map(); // stream_id -> StreamInfo
    this.own = null; // {id, channel, media, video, canvas, timer, ws, viewers, sent, error}
    this.watching = null; // {id, channel, canvas, ws, frames, stats, error}
    this.setup = null; // channel whose "Go live" form is open
    this.errors = new Map(); // channel -> message (start or watch failure)
    // Closing or reloading the page ends its camera stream: nothing would
    // feed it any more.
    window.addEventListener('pagehide', () => {
      if (!this.own) return;
      fetch(`/api/v1/streams/${this.own.id}`, { method: 'DELETE', keepalive: true, credentials: 'same-origin', headers: { 'X-Segchat': '1' } }).catch(() => {});
    });
  }

  // ------------------------------------------------------------ live list

  setLive(list) {
    this.live = new Map(list.map((st) => [st.stream_id, st]));
    this.render();
  }

  started(st) {
    this.live.set(st.stream_id, st);
    this.render();
  }

  stopped(id) {
    this.live.delete(id);
    if (this.watching && this.watching.id === id) {
      this.watching.ended = 'The stream ended.';
      if (this.watching.ws) this.watching.ws.close();
    }
    this.render();
  }

  liveIn(channel) {
    return [...this.live.values()].filter((st) => st.channel === channel);
  }

  // ------------------------------------------------------------ going live

  openSetup(channel) {
    this.setup = channel;
    this.errors.delete(channel);
    this.render();
    const b = this.el.querySelector('#stream-start');
    if (b) b.focus();
  }

  async goLive(channel, { width, height, fps, quality }) {
    if (this.own) return;
    this.errors.delete(channel);
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps } }, audio: false });
    } catch (e) {
      this.errors.set(channel, cameraReason(e));
      this.render();
      return;
    }
    let info;
    try {
      info = (await api('POST', '/streams', { channel, source: 'push', width, height, fps })).stream;
    } catch (e) {
      for (const t of media.getTracks()) t.stop();
      this.errors.set(channel, `Could not go live: ${e.reason}`);
      this.render();
      return;
    }
    const video = h('video', { muted: true, playsinline: true, class: 'stream-source' });
    video.muted = true;
    video.srcObject = media;
    try { await video.play(); } catch { /* frames are drawn once it plays */ }
    const canvas = h('canvas', { class: 'stream-canvas', id: 'stream-preview', width: String(width), height: String(height), 'aria-label': 'Your camera, as viewers see it' });
    const own = { id: info.stream_id, channel, media, video, canvas, width, height, fps, quality, viewers: 0, sent: 0, busy: false, timer: null, ws: null, error: '' };
    this.own = own;
    this.setup = null;
    this.live.set(info.stream_id, info);
    own.ws = streamSocket(own.id, {
      onStats: (st) => {
        if (st.streaming) { own.viewers = st.streaming.viewer_count; this.updateOwn(); }
      },
    });
    const g = canvas.getContext('2d');
    const period = 1000 / fps;
    const tick = async () => {
      if (this.own !== own) return;
      own.timer = setTimeout(tick, period);
      // One frame in flight at a time: a slow node gets fewer frames,
      // never a queue.
      if (own.busy || video.readyState < 2) return;
      own.busy = true;
      let done;
      own.pending = new Promise((r) => { done = r; });
      try {
        g.drawImage(video, 0, 0, width, height);
        const blob = await new Promise((r) => canvas.toBlob(r, 'image/jpeg', quality));
        if (blob && this.own === own) {
          const resp = await fetch(`/api/v1/streams/${own.id}/frames`, {
            method: 'POST', credentials: 'same-origin',
            headers: { 'X-Segchat': '1', 'Content-Type': 'image/jpeg' }, body: blob,
          });
          if (resp.ok) { own.sent += 1; own.error = ''; } else if (this.own === own) {
            let reason = `HTTP ${resp.status}`;
            try { reason = (await resp.json()).reason || reason; } catch { /* not JSON */ }
            own.error = reason;
            if (resp.status === 404) { this.stopOwn(`Your stream ended: ${reason}`); return; }
          }
          this.updateOwn();
        }
      } catch (e) {
        own.error = 'Cannot reach your node.';
        this.updateOwn();
      } finally {
        own.busy = false;
        done();
      }
    };
    tick();
    announce(`You are live in #${channel}`);
    this.render();
    this.onChange();
  }

  async stopOwn(message) {
    const own = this.own;
    if (!own) return;
    this.own = null;
    clearTimeout(own.timer);
    for (const t of own.media.getTracks()) t.stop();
    if (own.ws) own.ws.close();
    this.live.delete(own.id);
    // Let a frame already on its way land before the stream goes.
    if (own.pending) await own.pending;
    try { await api('DELETE', `/streams/${own.id}`); } catch { /* ended already */ }
    if (message) this.errors.set(own.channel, message);
    announce('Your stream stopped');
    this.render();
    this.onChange();
  }

  async stopElsewhere(st) {
    try {
      await api('DELETE', `/streams/${st.stream_id}`);
    } catch (e) {
      this.errors.set(st.channel, `Could not stop it here: ${e.reason}`);
    }
    this.render();
  }

  updateOwn() {
    const own = this.own;
    const line = this.el.querySelector('#stream-own-stats');
    if (!own || !line) return;
    line.dataset.viewers = String(own.viewers);
    line.dataset.sent = String(own.sent);
    line.textContent = `${own.viewers} viewer${own.viewers === 1 ? '' : 's'} · ${own.width}×${own.height} · ${own.fps} fps · ${own.sent} frames sent${own.error ? ` · ${own.error}` : ''}`;
  }

  // ------------------------------------------------------------ watching

  async watch(st) {
    if (this.watching) this.unwatch();
    this.errors.delete(st.channel);
    const canvas = h('canvas', { class: 'stream-canvas', id: 'stream-player', width: String(st.width), height: String(st.height), 'aria-label': `${displayName(st.streamer)}'s livestream`, dataset: { frames: '0' } });
    const w = { id: st.stream_id, channel: st.channel, info: st, canvas, ws: null, frames: 0, stats: null, ended: '', connecting: true };
    this.watching = w;
    this.render();
    try {
      w.stats = { watching: await api('POST', `/streams/${st.stream_id}/watch`) };
    } catch (e) {
      if (this.watching === w) this.watching = null;
      this.errors.set(st.channel, e.reason);
      this.render();
      return;
    }
    w.connecting = false;
    const g = canvas.getContext('2d');
    let drawing = false;
    w.ws = streamSocket(w.id, {
      onFrame: async (blob) => {
        if (drawing || this.watching !== w) return; // the next one will do
        drawing = true;
        try {
          const bmp = await createImageBitmap(blob);
          if (canvas.width !== bmp.width || canvas.height !== bmp.height) { canvas.width = bmp.width; canvas.height = bmp.height; }
          g.drawImage(bmp, 0, 0);
          bmp.close();
          w.frames += 1;
          canvas.dataset.frames = String(w.frames);
        } catch { /* a broken JPEG: skip it */ } finally { drawing = false; }
      },
      onStats: (stats) => { w.stats = stats; this.updateWatch(); },
      onClose: () => {
        if (this.watching !== w) return;
        if (!w.ended) w.ended = 'The stream ended.';
        this.updateWatch();
      },
    });
    this.render();
  }

  unwatch() {
    const w = this.watching;
    if (!w) return;
    this.watching = null;
    if (w.ws) { w.ws.onclose = null; w.ws.close(); }
    if (!w.connecting) api('DELETE', `/streams/${w.id}/watch`).catch(() => {});
    this.render();
  }

  updateWatch() {
    const w = this.watching;
    const line = this.el.querySelector('#stream-stats');
    const msg = this.el.querySelector('#stream-message');
    if (!w || !line) return;
    const v = w.stats && w.stats.watching;
    if (w.connecting) { line.textContent = 'Connecting to the streamer…'; return; }
    if (v) {
      const r = v.report;
      line.dataset.fps = String(r.fps);
      line.dataset.state = v.state;
      line.textContent = `${r.fps} fps · latency ${ms(r.latency_p50_us)} (p95 ${ms(r.latency_p95_us)}) · loss ${lossPercent(r).toFixed(1)}% · ${v.bitrate_kbps} kbit/s`;
    }
    let text = w.ended;
    if (!text && v && (v.state === 'no_udp' || v.state === 'ended')) text = v.message || '';
    if (!text && v && v.state === 'waiting') text = 'Waiting for the first frame…';
    if (msg) {
      msg.textContent = text;
      msg.hidden = !text;
      msg.dataset.state = (v && v.state) || '';
    }
  }

  // ------------------------------------------------------------ rendering

  render() {
    const { channel, canWrite, writeReason } = this.ctx();
    const parts = [];
    const err = channel ? this.errors.get(channel) : null;
    if (this.own && this.own.channel === channel) parts.push(this.ownCard());
    else if (this.setup === channel && channel) parts.push(this.setupCard(channel, canWrite, writeReason));
    if (this.watching && this.watching.channel === channel) parts.push(this.playerCard());
    else {
      const { me } = this.ctx();
      for (const st of this.liveIn(channel)) {
        if (this.own && this.own.id === st.stream_id) continue;
        if (me && me.kind === 'user' && st.streamer === me.username) {
          // Streamed by this account from elsewhere (the CLI, another tab).
          parts.push(h('div', { class: 'stream-card live-row', dataset: { stream: String(st.stream_id) } },
            h('span', { class: 'live-badge' }, 'LIVE'),
            h('span', { class: 'live-who' }, 'You are live here from another tab or the command line'),
            h('button', { type: 'button', class: 'btn danger small', onclick: () => this.stopElsewhere(st) }, 'Stop')));
          continue;
        }
        parts.push(h('div', { class: 'stream-card live-row', dataset: { stream: String(st.stream_id) } },
          h('span', { class: 'live-badge' }, 'LIVE'),
          h('span', { class: 'live-who' }, h('strong', {}, displayName(st.streamer)), ` is live · ${st.width}×${st.height}`),
          h('button', { type: 'button', class: 'btn primary small stream-watch', 'aria-label': `Watch ${displayName(st.streamer)}'s stream`, onclick: () => this.watch(st) }, icon('eye'), 'Watch')));
      }
    }
    if (err) {
      parts.push(h('div', { class: 'banner warn stream-error', role: 'alert', id: 'stream-error' }, icon('warn'),
        h('span', {}, h('strong', {}, 'Livestream: '), err),
        h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Dismiss', onclick: () => { this.errors.delete(channel); this.render(); } }, icon('close'))));
    }
    clear(this.el, parts);
    this.el.hidden = !parts.length;
    this.updateOwn();
    this.updateWatch();
  }

  setupCard(channel, canWrite, writeReason) {
    const sel = (id, label, options, value) => h('label', { class: 'stream-field' }, h('span', {}, label),
      h('select', { id }, options.map(([v, t]) => h('option', { value: v, selected: v === value ? true : null }, t))));
    const form = h('form', {
      class: 'stream-card stream-setup', id: 'stream-setup',
      onsubmit: (e) => {
        e.preventDefault();
        const [width, height] = SIZES[form.querySelector('#stream-size').value];
        this.goLive(channel, {
          width, height,
          fps: Number(form.querySelector('#stream-fps').value),
          quality: Number(form.querySelector('#stream-quality').value),
        });
      },
    },
    h('strong', {}, `Go live in #${channel}`),
    sel('stream-size', 'Size', Object.keys(SIZES).map((k) => [k, k.replace('x', '×')]), '640x480'),
    sel('stream-fps', 'Frame rate', [['5', '5 fps'], ['10', '10 fps'], ['15', '15 fps'], ['24', '24 fps']], '15'),
    sel('stream-quality', 'Quality', [['0.5', 'Low'], ['0.7', 'Medium'], ['0.85', 'High']], '0.7'),
    h('span', { class: 'stream-actions' },
      h('button', { type: 'button', class: 'btn ghost small', onclick: () => { this.setup = null; this.render(); this.onChange(); } }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn primary small', id: 'stream-start', disabled: !canWrite, title: canWrite ? null : writeReason }, 'Start camera')),
    h('small', { class: 'muted' }, 'Frames go straight from your node to each viewer’s node, never through the server.'));
    return form;
  }

  ownCard() {
    const own = this.own;
    return h('div', { class: 'stream-card stream-own', id: 'stream-own' },
      h('div', { class: 'stream-head' },
        h('span', { class: 'live-badge' }, 'LIVE'),
        h('strong', {}, 'You are live'),
        h('button', { type: 'button', class: 'btn danger small', id: 'stream-stop', onclick: () => this.stopOwn() }, 'Stop')),
      h('div', { class: 'stream-view' }, own.canvas),
      h('p', { class: 'stream-stats', id: 'stream-own-stats', role: 'status' }));
  }

  playerCard() {
    const w = this.watching;
    return h('div', { class: 'stream-card stream-player', id: 'stream-player-card', dataset: { stream: String(w.id) } },
      h('div', { class: 'stream-head' },
        h('span', { class: 'live-badge' }, 'LIVE'),
        h('strong', {}, displayName(w.info.streamer)),
        h('button', { type: 'button', class: 'btn ghost small', id: 'stream-unwatch', onclick: () => this.unwatch() }, 'Stop watching')),
      h('div', { class: 'stream-view' }, w.canvas),
      h('p', { class: 'stream-message', id: 'stream-message', role: 'status', hidden: true }),
      h('p', { class: 'stream-stats', id: 'stream-stats' }));
  }
}
