// Message markdown, the small chat dialect: **bold**, *italic* or
// _italic_, ~~strike~~, `code`, ``` fenced blocks ```, > quotes,
// ||spoilers||, bare http(s) links and @mentions. Everything else is text.
//
// Two halves: `parse` turns a body into a small token tree and touches no
// DOM (so `node --test` checks it without a browser); `render` builds DOM
// nodes from that tree with createElement and textContent only — message
// text is never parsed as HTML, and a link's address is always one that
// `new URL` reads as http: or https:.
//
// Cost: one pass over the lines for blocks (quotes nest at most
// MAX_QUOTE_DEPTH deep), one pass per block for inline pieces, and one
// stack pass to pair emphasis markers (each marker is pushed and popped at
// most once). Code spans find their closing run by binary search in the
// runs of the same length. No regular expression can backtrack past a
// few characters, so a hostile 4,000-byte body costs about what it is long.

export const MAX_QUOTE_DEPTH = 8;
// Emphasis nested deeper than this is shown with its markers as text.
export const MAX_NEST = 24;
// Longer addresses stay text (and bound the work per 'http').
export const MAX_URL = 2048;

// ---------------------------------------------------------------- blocks

// The tree: { type: 'doc', children: [block…] } where a block is
//   { type: 'para', children: [inline…] }
//   { type: 'code_block', lang, text }
//   { type: 'quote', children: [block…] }
// and an inline node is
//   { type: 'text', text }       { type: 'code', text }
//   { type: 'strong' | 'em' | 'strike' | 'spoiler', children: [inline…] }
//   { type: 'link', href, text }  { type: 'mention', name }
export function parse(body) {
  const lines = String(body ?? '').replace(/\r\n?/g, '\n').split('\n');
  return { type: 'doc', children: parseBlocks(lines, 0) };
}

const FENCE_OPEN = /^ {0,3}```([^`]*)$/;
const FENCE_CLOSE = /^ {0,3}```[ \t]*$/;
const QUOTE = /^>(?= |$|>)/;

function parseBlocks(lines, depth) {
  const out = [];
  let i = 0;
  const n = lines.length;
  const quoteOk = depth < MAX_QUOTE_DEPTH;
  while (i < n) {
    const line = lines[i];
    const fence = FENCE_OPEN.exec(line);
    if (fence) {
      // An unclosed fence runs to the end, as in CommonMark.
      let j = i + 1;
      while (j < n && !FENCE_CLOSE.test(lines[j])) j++;
      out.push({ type: 'code_block', lang: fence[1].trim().split(/\s/)[0].slice(0, 32), text: lines.slice(i + 1, j).join('\n') });
      i = j + 1;
      continue;
    }
    if (quoteOk && QUOTE.test(line)) {
      const inner = [];
      while (i < n && QUOTE.test(lines[i])) {
        inner.push(lines[i].replace(/^> ?/, ''));
        i++;
      }
      out.push({ type: 'quote', children: parseBlocks(inner, depth + 1) });
      continue;
    }
    const start = i;
    i++;
    while (i < n && !FENCE_OPEN.test(lines[i]) && !(quoteOk && QUOTE.test(lines[i]))) i++;
    out.push({ type: 'para', children: parseInline(lines.slice(start, i).join('\n')) });
  }
  return out;
}

// ---------------------------------------------------------------- inline

const KIND_TYPE = { '**': 'strong', '*': 'em', _: 'em', '~~': 'strike', '||': 'spoiler' };
const SPACE = /\s/;
const WORD = /[A-Za-z0-9]/;
const NAME_START = /[A-Za-z0-9]/;
const NAME_CHAR = /[A-Za-z0-9_.-]/;
const URL_STOP = /[\s<>"`]/;
const URL_TRAIL = /[.,:;!?'"*_~|]/;
const ESCAPABLE = /[\\`*_~|>@[\]()#-]/;
const SPECIAL = /[`\\h@*_~|]/g;

export function parseInline(s) {
  const pieces = scan(s);
  pair(pieces);
  return build(pieces);
}

// Backtick runs, for code spans: the run at each position, and the start
// positions of the runs of each length (ascending).
function backtickRuns(s) {
  const at = new Map();
  const byLen = new Map();
  for (let i = s.indexOf('`'); i >= 0; i = s.indexOf('`', i)) {
    let j = i;
    while (s[j] === '`') j++;
    at.set(i, j - i);
    if (!byLen.has(j - i)) byLen.set(j - i, []);
    byLen.get(j - i).push(i);
    i = j;
  }
  return { at, byLen };
}

// The first element of the ascending `list` greater than `p`, or -1.
function firstAfter(list, p) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] <= p) lo = mid + 1; else hi = mid;
  }
  return lo < list.length ? list[lo] : -1;
}

// Splits `s` into pieces: text, code, link, mention, and delimiter runs
// that may open or close emphasis.
function scan(s) {
  const pieces = [];
  const runs = backtickRuns(s);
  const seen = { end: -1, failed: false };
  let text = '';
  const flush = () => { if (text) { pieces.push({ t: 'text', text }); text = ''; } };
  const n = s.length;
  let i = 0;
  while (i < n) {
    SPECIAL.lastIndex = i;
    const hit = SPECIAL.exec(s);
    if (!hit) { text += s.slice(i); break; }
    if (hit.index > i) { text += s.slice(i, hit.index); i = hit.index; }
    const ch = s[i];
    if (ch === '`') {
      const k = runs.at.get(i);
      const close = firstAfter(runs.byLen.get(k), i);
      if (close < 0) { text += s.slice(i, i + k); i += k; continue; }
      let code = s.slice(i + k, close);
      if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim()) code = code.slice(1, -1);
      flush();
      pieces.push({ t: 'code', text: code });
      i = close + k;
      continue;
    }
    if (ch === '\\') {
      if (i + 1 < n && ESCAPABLE.test(s[i + 1])) { text += s[i + 1]; i += 2; } else { text += ch; i++; }
      continue;
    }
    if (ch === 'h') {
      const link = i > 0 && WORD.test(s[i - 1]) ? null : readUrl(s, i, seen);
      if (link) {
        flush();
        pieces.push({ t: 'link', href: link.href, text: link.text });
        i += link.text.length;
      } else { text += ch; i++; }
      continue;
    }
    if (ch === '@') {
      const name = i > 0 && NAME_CHAR.test(s[i - 1]) ? null : readName(s, i + 1);
      if (name) {
        flush();
        pieces.push({ t: 'mention', name });
        i += 1 + name.length;
      } else { text += ch; i++; }
      continue;
    }
    // A run of one marker character.
    let j = i;
    while (j < n && s[j] === ch) j++;
    const len = j - i;
    const prev = i > 0 ? s[i - 1] : '';
    const next = j < n ? s[j] : '';
    let canOpen = next !== '' && !SPACE.test(next);
    let canClose = prev !== '' && !SPACE.test(prev);
    let kinds = [];
    if (ch === '*') {
      kinds = Array(len >> 1).fill('**');
      if (len & 1) {
        if (canClose && !canOpen) kinds.unshift('*'); else kinds.push('*');
      }
    } else if (ch === '_') {
      // Only a lone '_', and not inside a word (snake_case stays text).
      if (len === 1) {
        canOpen = canOpen && !WORD.test(prev);
        canClose = canClose && !WORD.test(next);
        kinds = ['_'];
      }
    } else {
      kinds = Array(len >> 1).fill(ch + ch);
    }
    flush();
    if (!kinds.length || (!canOpen && !canClose)) {
      pieces.push({ t: 'text', text: s.slice(i, j) });
    } else {
      for (const kind of kinds) pieces.push({ t: 'delim', kind, canOpen, canClose, match: -1 });
      if (ch !== '*' && ch !== '_' && (len & 1)) pieces.push({ t: 'text', text: ch });
    }
    i = j;
  }
  flush();
  return pieces;
}

// An http(s) address starting at `i`, without the punctuation that ends a
// sentence around it, or null. Only what `new URL` accepts with an http:
// or https: scheme and a host counts. `seen` remembers the last run of
// non-space characters tried: each is scanned once, and one that held no
// valid address is not tried again from inside (so junk like
// "http://[http://[…" costs what it is long).
function readUrl(s, i, seen) {
  if (!(s.startsWith('http://', i) || s.startsWith('https://', i))) return null;
  if (i < seen.end) { if (seen.failed) return null; } else {
    let e = i;
    while (e < s.length && !URL_STOP.test(s[e])) e++;
    seen.end = e;
    seen.failed = false;
  }
  let j = seen.end;
  if (j - i > MAX_URL) { seen.failed = true; return null; }
  let open = 0;
  let close = 0;
  for (let k = i; k < j; k++) {
    if (s[k] === '(') open++;
    else if (s[k] === ')') close++;
  }
  // Trailing punctuation, and ')' without its '(', belong to the sentence.
  while (j > i) {
    const c = s[j - 1];
    if (URL_TRAIL.test(c)) { j--; continue; }
    if (c === ')' && close > open) { close--; j--; continue; }
    break;
  }
  const text = s.slice(i, j);
  const href = safeHref(text);
  if (!href) { seen.failed = true; return null; }
  return { href, text };
}

// `raw` as an absolute http(s) address with a host, else null.
export function safeHref(raw) {
  let u;
  try { u = new URL(raw); } catch { return null; }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname) return null;
  return u.href;
}

// A username (3–32 of letters, digits, '_', '-', '.', starting with a
// letter or digit) starting at `i`; a '.' or '-' that ends it ends the
// sentence instead.
function readName(s, i) {
  if (i >= s.length || !NAME_START.test(s[i])) return null;
  let j = i + 1;
  while (j < s.length && j - i <= 40 && NAME_CHAR.test(s[j])) j++;
  while (j > i && (s[j - 1] === '.' || s[j - 1] === '-')) j--;
  if (j - i < 3 || j - i > 32) return null;
  return s.slice(i, j);
}

// Pairs openers and closers of the same kind with one stack pass. A
// closer takes the nearest open marker of its kind; open markers of other
// kinds in between stay text. Nothing between an opener and its closer
// means no pair (`****` is text).
function pair(pieces) {
  const stack = [];
  const open = { '**': 0, '*': 0, _: 0, '~~': 0, '||': 0 };
  pieces.forEach((p, idx) => {
    if (p.t !== 'delim') return;
    if (p.canClose && open[p.kind] > 0) {
      let k = stack.length - 1;
      while (pieces[stack[k]].kind !== p.kind) k--;
      const o = stack[k];
      if (o + 1 < idx) {
        for (let m = stack.length - 1; m >= k; m--) open[pieces[stack[m]].kind]--;
        stack.length = k;
        pieces[o].match = idx;
        p.closes = true;
        return;
      }
    }
    if (p.canOpen) {
      stack.push(idx);
      open[p.kind]++;
    }
  });
}

// The tree of inline nodes, without recursion (a hostile body cannot run
// the stack out): a frame per open pair, popped at its closer.
function build(pieces) {
  const root = [];
  const frames = [{ children: root, end: -1, flat: null }];
  let depth = 0;
  const addText = (list, t) => {
    const last = list[list.length - 1];
    if (last && last.type === 'text') last.text += t;
    else list.push({ type: 'text', text: t });
  };
  for (let k = 0; k < pieces.length; k++) {
    const top = frames[frames.length - 1];
    if (k === top.end) {
      frames.pop();
      if (top.flat) addText(top.children, top.flat); else depth--;
      continue;
    }
    const out = top.children;
    const p = pieces[k];
    if (p.t === 'text') addText(out, p.text);
    else if (p.t === 'code') out.push({ type: 'code', text: p.text });
    else if (p.t === 'link') out.push({ type: 'link', href: p.href, text: p.text });
    else if (p.t === 'mention') out.push({ type: 'mention', name: p.name });
    else if (p.match > k) {
      if (depth >= MAX_NEST) {
        addText(out, p.kind);
        frames.push({ children: out, end: p.match, flat: p.kind });
      } else {
        const node = { type: KIND_TYPE[p.kind], children: [] };
        out.push(node);
        frames.push({ children: node.children, end: p.match, flat: null });
        depth++;
      }
    } else {
      addText(out, p.kind);
    }
  }
  return root;
}

// Whether `body` mentions `user` as @user, by the node's rule: not right
// after a name character, and not followed by one (a '.' may follow: it
// ends a sentence). For rows that arrive without `mentions_me`.
export function mentionsUser(body, user) {
  if (!body || !user) return false;
  const needle = `@${user}`;
  for (let at = body.indexOf(needle); at >= 0; at = body.indexOf(needle, at + 1)) {
    const before = at > 0 ? body[at - 1] : '';
    const after = body[at + needle.length] || '';
    if ((!before || !NAME_CHAR.test(before)) && (!after || after === '.' || !NAME_CHAR.test(after))) return true;
  }
  return false;
}

// ---------------------------------------------------------------- plain text

// The text a tree shows, spoilers masked, on one line: for excerpts
// (reply quotes, notifications).
export function plainText(tree, { maskSpoilers = true } = {}) {
  const parts = [];
  const walk = (node) => {
    switch (node.type) {
      case 'text': case 'code': parts.push(node.text); break;
      case 'link': parts.push(node.text); break;
      case 'mention': parts.push(`@${node.name}`); break;
      case 'code_block': parts.push(` ${node.text} `); break;
      case 'spoiler':
        if (maskSpoilers) { parts.push('[spoiler]'); break; }
        node.children.forEach(walk);
        break;
      default:
        if (node.children) {
          node.children.forEach((c) => { walk(c); if (node.type === 'doc' || node.type === 'quote') parts.push(' '); });
        }
    }
  };
  walk(tree);
  return parts.join('').replace(/\s+/g, ' ').trim();
}

// At most `max` characters of `body` as one line of plain text.
export function excerpt(body, max = 120) {
  const text = plainText(parse(String(body ?? '').slice(0, max * 8)));
  const chars = [...text];
  return chars.length > max ? `${chars.slice(0, max - 1).join('').trimEnd()}…` : text;
}

// ---------------------------------------------------------------- DOM

// DOM nodes for `tree` (a DocumentFragment). `opts`:
//   me           the signed-in username: mentions of it are marked
//   spoilerKey   a prefix naming this message's spoilers, and
//   revealed     a Set of the spoiler keys already shown (it survives the
//                timeline being drawn again); `onReveal(key)` is told
//                when one is shown.
export function render(tree, opts = {}) {
  const doc = opts.document || globalThis.document;
  const frag = doc.createDocumentFragment();
  const ctx = { doc, opts, spoiler: 0 };
  for (const b of tree.children) frag.append(block(ctx, b));
  return frag;
}

function el(ctx, tag, cls, text) {
  const e = ctx.doc.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function block(ctx, b) {
  switch (b.type) {
    case 'code_block': {
      const pre = el(ctx, 'pre', 'md-pre');
      const code = el(ctx, 'code', null, b.text);
      if (b.lang) code.dataset.lang = b.lang;
      pre.append(code);
      return pre;
    }
    case 'quote': {
      const q = el(ctx, 'blockquote', 'md-quote');
      for (const c of b.children) q.append(block(ctx, c));
      return q;
    }
    default: {
      const p = el(ctx, 'p', 'md-p');
      inlines(ctx, p, b.children, false);
      return p;
    }
  }
}

function inlines(ctx, parent, nodes, plainLinks) {
  for (const n of nodes) parent.append(inline(ctx, n, plainLinks));
}

function inline(ctx, n, plainLinks) {
  const { doc, opts } = ctx;
  switch (n.type) {
    case 'text': return doc.createTextNode(n.text);
    case 'code': return el(ctx, 'code', 'md-code', n.text);
    case 'strong': case 'em': case 'strike': {
      const e = el(ctx, { strong: 'strong', em: 'em', strike: 's' }[n.type]);
      inlines(ctx, e, n.children, plainLinks);
      return e;
    }
    case 'link': {
      // Checked again here: only http(s) ever becomes an href.
      const href = safeHref(n.href);
      if (!href || plainLinks) return el(ctx, 'span', 'md-link-text', n.text);
      const a = el(ctx, 'a', 'md-link', n.text);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer nofollow';
      return a;
    }
    case 'mention': {
      const me = opts.me && n.name.toLowerCase() === String(opts.me).toLowerCase();
      const m = el(ctx, 'span', `mention${me ? ' me' : ''}`, `@${n.name}`);
      m.dataset.user = n.name;
      return m;
    }
    case 'spoiler': return spoiler(ctx, n);
    default: return doc.createTextNode('');
  }
}

// Hidden until clicked or activated with Enter/Space: a button-like span
// whose text is invisible (not just coloured away, so nothing leaks to
// screen readers or contrast checks); shown, it is plain text again.
function spoiler(ctx, n) {
  const key = `${ctx.opts.spoilerKey || ''}#${ctx.spoiler++}`;
  const revealed = ctx.opts.revealed;
  const wrap = el(ctx, 'span', 'spoiler');
  const inner = el(ctx, 'span', 'spoiler-text');
  if (revealed && revealed.has(key)) {
    wrap.classList.add('revealed');
    inlines(ctx, inner, n.children, false);
    wrap.append(inner);
    return wrap;
  }
  // Links inside a hidden spoiler are text until it is shown.
  inlines(ctx, inner, n.children, true);
  wrap.append(inner);
  wrap.setAttribute('role', 'button');
  wrap.setAttribute('tabindex', '-1');
  wrap.setAttribute('aria-label', 'Spoiler, hidden: activate to show');
  wrap.title = 'Spoiler: click to show';
  const show = (e) => {
    e.preventDefault();
    e.stopPropagation();
    // Asked first: without its tabindex it can no longer hold focus.
    const hadFocus = ctx.doc.activeElement === wrap;
    if (revealed) revealed.add(key);
    wrap.classList.add('revealed');
    wrap.removeAttribute('role');
    wrap.removeAttribute('tabindex');
    wrap.removeAttribute('aria-label');
    wrap.removeAttribute('title');
    const shown = el(ctx, 'span', 'spoiler-text');
    inlines(ctx, shown, n.children, false);
    inner.replaceWith(shown);
    if (hadFocus) {
      const msg = wrap.closest && wrap.closest('article.msg');
      if (msg) msg.focus({ preventScroll: true });
    }
    if (ctx.opts.onReveal) ctx.opts.onReveal(key);
  };
  wrap.addEventListener('click', show, { once: true });
  wrap.addEventListener('keydown', (e) => {
    if (wrap.classList.contains('revealed')) return;
    if (e.key === 'Enter' || e.key === ' ') show(e);
  });
  return wrap;
}
