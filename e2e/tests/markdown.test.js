// The message markdown parser (web/markdown.js), without a browser: what
// each marker makes, what stays text, that nothing but http(s) becomes a
// link, that hostile and broken input stays text, and that the cost grows
// about linearly with the length (no backtracking blow-up).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse, parseInline, excerpt, plainText, safeHref, mentionsUser, MAX_QUOTE_DEPTH, MAX_NEST } from '../../crates/segchat-node/web/markdown.js';

// A compact picture of a tree: text as "…", other nodes as type(children).
function show(nodes) {
  return nodes.map((n) => {
    switch (n.type) {
      case 'text': return JSON.stringify(n.text);
      case 'code': return `code${JSON.stringify(n.text)}`;
      case 'link': return `link<${n.href}>${JSON.stringify(n.text)}`;
      case 'mention': return `@${n.name}`;
      case 'code_block': return `pre[${n.lang}]${JSON.stringify(n.text)}`;
      default: return `${n.type}(${show(n.children)})`;
    }
  }).join(' ');
}
const md = (text) => show(parse(text).children);
const inline = (text) => show(parseInline(text));

test('emphasis: bold, italic with * and _, strike, and their nesting', () => {
  assert.equal(inline('**bold**'), 'strong("bold")');
  assert.equal(inline('*it* and _it_'), 'em("it") " and " em("it")');
  assert.equal(inline('~~gone~~'), 'strike("gone")');
  assert.equal(inline('***both***'), 'strong(em("both"))');
  assert.equal(inline('**bold _and it_ ~~and strike~~**'), 'strong("bold " em("and it") " " strike("and strike"))');
  assert.equal(inline('a**b**c'), '"a" strong("b") "c"', 'inside a word with *');
});

test('markers that do not pair stay text', () => {
  assert.equal(inline('snake_case_name'), '"snake_case_name"', '_ inside a word');
  assert.equal(inline('__init__'), '"__init__"');
  assert.equal(inline('2 * 3 * 4'), '"2 * 3 * 4"', 'spaced asterisks');
  assert.equal(inline('**unclosed'), '"**unclosed"');
  assert.equal(inline('closed** only'), '"closed** only"');
  assert.equal(inline('****'), '"****"', 'nothing between');
  assert.equal(inline('~single~ |pipe|'), '"~single~ |pipe|"');
  assert.equal(inline('a || b'), '"a || b"');
  // Crossed markers: the first closer wins, what it crosses is text.
  assert.equal(inline('**a *b** c*'), 'strong("a *b") " c*"');
  assert.equal(inline('\\*not\\* \\`code\\`'), '"*not* `code`"', 'backslash escapes');
});

test('inline code keeps everything inside as text', () => {
  assert.equal(inline('`x`'), 'code"x"');
  assert.equal(inline('`**not bold** <b>`'), 'code"**not bold** <b>"');
  assert.equal(inline('``a ` b``'), 'code"a ` b"', 'a longer fence holds a backtick');
  assert.equal(inline('`a **b` c**'), 'code"a **b" " c**"');
  assert.equal(inline('`unclosed **b**'), '"`unclosed " strong("b")');
  assert.equal(inline('```one line```'), 'code"one line"');
});

test('fenced code blocks, with a language, closed or running to the end', () => {
  assert.equal(md('```js\nconst a = "**";\n<b>x</b>\n```\nafter'), 'pre[js]"const a = \\"**\\";\\n<b>x</b>" para("after")');
  assert.equal(md('before\n```\n  indented\n```'), 'para("before") pre[]"  indented"');
  assert.equal(md('```\nnever closed\n**x**'), 'pre[]"never closed\\n**x**"');
});

test('block quotes, nested, and limited in depth', () => {
  assert.equal(md('> quoted **b**\nnot quoted'), 'quote(para("quoted " strong("b"))) para("not quoted")');
  assert.equal(md('> a\n>> b\n> c'), 'quote(para("a") quote(para("b")) para("c"))');
  assert.equal(md('>not a quote'), 'para(">not a quote")');
  assert.equal(md('a > b'), 'para("a > b")');
  // Deeper than the limit: the rest is text, not more nesting.
  const deep = parse('>'.repeat(100) + ' x');
  let depth = 0;
  for (let n = deep.children[0]; n && n.type === 'quote'; n = n.children[0]) depth++;
  assert.equal(depth, MAX_QUOTE_DEPTH);
});

test('spoilers hold other markup', () => {
  assert.equal(inline('||secret||'), 'spoiler("secret")');
  assert.equal(inline('it was ||**him**||!'), '"it was " spoiler(strong("him")) "!"');
  assert.equal(plainText(parse('the end: ||he dies||')), 'the end: [spoiler]', 'masked in excerpts');
});

test('links: bare http(s) addresses only, without the sentence around them', () => {
  assert.equal(inline('see https://example.com/a?b=1#c.'), '"see " link<https://example.com/a?b=1#c>"https://example.com/a?b=1#c" "."');
  assert.equal(inline('(http://x.org/wiki/Foo_(bar))'), '"(" link<http://x.org/wiki/Foo_(bar)>"http://x.org/wiki/Foo_(bar)" ")"');
  assert.equal(inline('**https://bold.example**'), 'strong(link<https://bold.example/>"https://bold.example")');
  assert.equal(inline('||https://s.example||'), 'spoiler(link<https://s.example/>"https://s.example")');
  assert.equal(inline('_https://x.example/a_b_'), 'em(link<https://x.example/a_b>"https://x.example/a_b")');
  assert.equal(inline('nohttps://x.example'), '"nohttps://x.example"', 'not in the middle of a word');
  assert.equal(inline('http://'), '"http://"', 'no host');
  assert.equal(inline('ftp://x.example'), '"ftp://x.example"');
});

test('hostile input stays text: HTML, script links, masked links', () => {
  assert.equal(inline('<img src=x onerror=alert(1)>'), '"<img src=x onerror=alert(1)>"');
  assert.equal(inline('<script>alert(1)</script>'), '"<script>alert(1)</script>"');
  assert.equal(inline('[x](javascript:alert(1))'), '"[x](javascript:alert(1))"');
  assert.equal(inline('javascript:alert(1)'), '"javascript:alert(1)"');
  assert.equal(inline('data:text/html,<b>x</b>'), '"data:text/html,<b>x</b>"');
  // A masked link shows its real address as the link, never other text.
  assert.equal(inline('[click](https://evil.example)'), '"[click](" link<https://evil.example/>"https://evil.example" ")"');
  for (const bad of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', ' javascript:x', 'vbscript:x', 'data:text/html,x', 'file:///etc/passwd', '//evil.example', 'http://']) {
    assert.equal(safeHref(bad), null, bad);
  }
  assert.equal(safeHref('https://ok.example/x'), 'https://ok.example/x');
});

test('mentions: @name as usernames are spelled, not e-mail addresses', () => {
  assert.equal(inline('hi @alice, and @bob.'), '"hi " @alice ", and " @bob "."');
  assert.equal(inline('@a.b-c_9 done'), '@a.b-c_9 " done"');
  assert.equal(inline('mail me@example.com'), '"mail me@example.com"');
  assert.equal(inline('@ab is too short, @_x starts badly'), '"@ab is too short, @_x starts badly"');
  assert.equal(inline(`@${'a'.repeat(33)}`), `"@${'a'.repeat(33)}"`, 'longer than a username');
  assert.equal(inline('**@alice**'), 'strong(@alice)');
  assert.equal(inline('`@alice`'), 'code"@alice"');
});

test('whether a body mentions a user, by the node\'s rule', () => {
  assert.equal(mentionsUser('hi @alice', 'alice'), true);
  assert.equal(mentionsUser('@alice, look', 'alice'), true);
  assert.equal(mentionsUser('thanks @alice.', 'alice'), true);
  assert.equal(mentionsUser('hi @alicex', 'alice'), false, 'a longer name');
  assert.equal(mentionsUser('hi @alice_2', 'alice'), false);
  assert.equal(mentionsUser('mail bob@alice', 'alice'), false, 'inside a word');
  assert.equal(mentionsUser('@al @alice', 'alice'), true, 'a later occurrence counts');
  assert.equal(mentionsUser('', 'alice'), false);
});

test('excerpts are one line of plain text, cut at a length', () => {
  assert.equal(excerpt('**Hello** _there_,\n> quoted\n```\ncode\n```'), 'Hello there, quoted code');
  const long = excerpt('word '.repeat(100), 40);
  assert.ok([...long].length <= 40, long);
  assert.ok(long.endsWith('…'));
  assert.equal(excerpt(''), '');
  assert.equal(excerpt(null), '');
});

test('very deep nesting is capped', () => {
  const text = `${'**a *b ~~c ||d '.repeat(200)}x${' e|| f~~ g* h**'.repeat(200)}`;
  let depth = 0;
  const walk = (nodes, d) => { for (const n of nodes) { depth = Math.max(depth, d); if (n.children) walk(n.children, d + 1); } };
  walk(parseInline(text), 0);
  assert.ok(depth <= MAX_NEST, `depth ${depth}`);
});

test('the cost grows about linearly, even for hostile input', () => {
  const cases = {
    'unclosed openers': (n) => '**a '.repeat(n),
    'alternating markers': (n) => '*_~~||`'.repeat(n),
    'backtick runs of every length': (n) => Array.from({ length: n }, (_, i) => '`'.repeat(1 + (i % 50)) + 'x').join(''),
    'broken links': (n) => 'http://['.repeat(n),
    'links': (n) => 'https://example.com/(a)_b* '.repeat(n),
    'mentions': (n) => '@aaa@bbb.'.repeat(n),
    'quote lines': (n) => '> > x\n'.repeat(n),
    'fence lines': (n) => '```\n'.repeat(n),
    'nesting': (n) => `${'**a *b ~~c ||d '.repeat(n)}x${' e|| f~~ g* h**'.repeat(n)}`,
  };
  // The best of three runs, so a pause of the JIT or the collector does
  // not count.
  const time = (f) => Math.min(...[0, 1, 2].map(() => {
    const t = process.hrtime.bigint();
    f();
    return Number(process.hrtime.bigint() - t) / 1e6;
  }));
  for (const [name, make] of Object.entries(cases)) {
    const small = make(2000);
    const big = make(20000);
    const ts = Math.max(time(() => parse(small)), 2);
    const tb = time(() => parse(big));
    // Ten times the input: well below the hundred times a quadratic takes.
    assert.ok(tb < ts * 40 + 50, `${name}: ${ts.toFixed(1)} ms for ${small.length} chars, ${tb.toFixed(1)} ms for ${big.length}`);
    assert.ok(tb < 3000, `${name}: ${tb.toFixed(0)} ms for ${big.length} chars`);
  }
  // A body at the limit (4,000 bytes) of the worst kind is quick.
  const worst = '**a *b ~~c ||d `'.repeat(250);
  assert.ok(time(() => parse(worst)) < 50);
});
