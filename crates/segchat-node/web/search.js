// The search panel: what `GET /api/v1/search` finds, newest first, a page
// at a time ("Load more" fetches the next one with the answer's cursor),
// with the count of every match, optionally only in one channel. Every
// word also finds the words it starts ("lore" finds "lorem"), on the node.
// panel.js opens the panel and says where to draw it; this module keeps
// the search's state and draws it.

import { api } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { displayName, relative, fullTime } from './format.js';

// Results per page (the API's default; it allows up to 200).
const PAGE = 50;

export class SearchPanel {
  // `current()`: the channel being read (or null); `jump(message)`: show
  // it in its channel; `close()`: close the panel; `changed()`: draw the
  // panel again (panel.js calls `render` if it is open).
  constructor({ current, jump, close, changed }) {
    Object.assign(this, { current, jump, close, changed });
    this.panel = null;
    this.seq = 0;
    this.reset('', null);
  }

  reset(q, channel) {
    Object.assign(this, {
      q, channel, results: [], total: 0, next: null,
      loading: false, loadingMore: false, error: '', moreError: '',
    });
  }

  // A new search for `q`, in `channel` only if given; answers the first page.
  async run(q, channel = this.channel) {
    const seq = ++this.seq;
    this.reset(q, channel);
    this.loading = true;
    this.changed();
    try {
      const r = await this.page(null);
      if (seq !== this.seq) return;
      this.results = r.results;
      this.total = r.total;
      this.next = r.next_cursor;
    } catch (e) {
      if (seq !== this.seq) return;
      this.error = e.reason;
    }
    this.loading = false;
    this.changed();
    announce(this.error || this.summary());
  }

  // The next page, added below what is shown; focus moves to its first
  // result, so the keyboard carries on where the list grew.
  async more() {
    if (!this.next || this.loadingMore) return;
    const seq = this.seq;
    const from = this.results.length;
    this.loadingMore = true;
    this.moreError = '';
    this.changed();
    try {
      const r = await this.page(this.next);
      if (seq !== this.seq) return;
      const have = new Set(this.results.map((m) => m.id));
      this.results.push(...r.results.filter((m) => !have.has(m.id)));
      this.total = r.total;
      this.next = r.next_cursor;
    } catch (e) {
      if (seq !== this.seq) return;
      this.moreError = `Could not load more: ${e.reason}`;
    }
    this.loadingMore = false;
    this.changed();
    const first = this.panel && this.panel.querySelector(`#search-results > li:nth-child(${from + 1}) .result`);
    if (first && !this.moreError) first.focus();
    announce(this.moreError || `Showing ${this.results.length} of ${this.total} results`);
  }

  page(cursor) {
    const params = new URLSearchParams({ q: this.q, limit: String(PAGE) });
    if (this.channel) params.set('channel', this.channel);
    if (cursor) params.set('cursor', cursor);
    return api('GET', `/search?${params}`);
  }

  summary() {
    const n = this.total;
    return `${n.toLocaleString('en')} result${n === 1 ? '' : 's'} for “${this.q}”${this.channel ? ` in #${this.channel}` : ''}`;
  }

  render(panel) {
    this.panel = panel;
    panel.setAttribute('aria-label', 'Search results');
    // Drawing anew must not lose the keyboard's place.
    const active = panel.contains(document.activeElement) ? document.activeElement : null;
    const keep = active && (active.id ? `#${CSS.escape(active.id)}` : active.dataset.id ? `.result[data-id="${CSS.escape(active.dataset.id)}"]` : null);

    const closeBtn = h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Close search', onclick: () => this.close() }, icon('close'));
    const here = this.channel || this.current();
    const onlyHere = h('input', {
      type: 'checkbox', id: 'search-here', checked: !!this.channel, disabled: !here,
      onchange: (e) => this.run(this.q, e.target.checked ? this.current() : null),
    });
    const filter = h('div', { class: 'result-count' },
      h('label', { class: 'check', for: 'search-here' }, onlyHere, h('span', {}, here ? `In #${here} only` : 'In this channel only')));

    let count = '';
    if (!this.loading && !this.error) {
      count = this.summary();
      if (this.results.length < this.total) count += ` · showing ${this.results.length.toLocaleString('en')}`;
    }
    let body;
    if (this.loading) body = h('p', { class: 'empty-line', role: 'status' }, 'Searching…');
    else if (this.error) body = h('p', { class: 'form-error', role: 'alert' }, this.error);
    else if (!this.results.length) body = h('p', { class: 'empty-line' }, `Nothing found for “${this.q}”${this.channel ? ` in #${this.channel}` : ''}.`);
    else {
      // `.results` on the wrapper too: its grid spaces the button like a result.
      body = h('div', { class: 'results' },
        h('ul', { class: 'results', role: 'list', id: 'search-results' }, this.results.map((m) => this.item(m))),
        this.next ? h('button', {
          type: 'button', class: 'btn wide', id: 'search-more', disabled: this.loadingMore,
          'aria-describedby': 'search-count', onclick: () => this.more(),
        }, this.loadingMore ? 'Loading…' : `Load more (${(this.total - this.results.length).toLocaleString('en')} left)`) : null,
        this.moreError ? h('p', { class: 'form-error', role: 'alert' }, this.moreError) : null);
    }
    clear(panel,
      h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, 'Search'), closeBtn),
      filter,
      h('p', { class: 'result-count', id: 'search-count' }, count),
      h('div', { class: 'panel-body' }, body));
    const again = keep && panel.querySelector(keep);
    if (again) again.focus();
  }

  item(m) {
    return h('li', {},
      h('button', { type: 'button', class: 'result', dataset: { id: m.id, channel: m.channel }, onclick: () => this.jump(m) },
        h('span', { class: 'result-head' },
          h('span', { class: 'result-chan' }, `#${m.channel}`),
          h('span', { class: 'author' }, displayName(m.author)),
          h('time', { datetime: new Date(m.ts_ms).toISOString(), title: fullTime(m.ts_ms) }, relative(m.ts_ms))),
        m.deleted ? h('span', { class: 'result-body deleted' }, 'message deleted') : h('span', { class: 'result-body' }, highlight(m.body, this.q))));
  }
}

// `text` with each searched word marked where it appears (a word also
// matches the start of a longer one, as the search does).
function highlight(text, q) {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  const lower = text.toLowerCase();
  const out = [];
  let i = 0;
  while (i < text.length) {
    let best = -1, len = 0;
    for (const w of words) {
      const j = lower.indexOf(w, i);
      if (j >= 0 && (best < 0 || j < best)) { best = j; len = w.length; }
    }
    if (best < 0) { out.push(text.slice(i)); break; }
    out.push(text.slice(i, best), h('mark', {}, text.slice(best, best + len)));
    i = best + len;
  }
  return out;
}
