// Everyday chat on a message, end to end: a real server, two real nodes
// (alice hosts #general, bob joins it) and two headless Chromium
// profiles. Markdown renders and hostile text stays text; bob replies and
// alice jumps to what he quoted (loading older history to find it);
// alice edits and deletes and bob sees it live; reactions count and
// toggle; an @mention gets its own badge, highlight and (tab hidden,
// permission given) a browser notification. The actions work from the
// keyboard and on a phone, and axe finds nothing serious on the way.
// Screenshots go to ../screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { aliceAndBob, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP, PHONE } from '../lib/browser.js';
import { axeViolations, describeViolations } from '../lib/axe.js';

const PASSWORD = 'correct horse battery';
let server, nodeA, nodeB, browser, alice, bob;
const procs = () => [nodeA, nodeB, server].filter(Boolean);

// A message whose own body (not a quote of it) holds `text`.
const msg = (page, text) => page.locator('#timeline article.msg').filter({ has: page.locator('.body', { hasText: text }) });
const chanItem = (page, name) => page.locator(`.chan[data-channel="${name}"]`);

async function send(page, text) {
  const box = page.locator('#composer-input');
  await box.click();
  await box.fill(text);
  await box.press('Enter');
  await eventually(`the box empties after sending ${JSON.stringify(text.slice(0, 30))}`, async () => (await box.inputValue()) === '');
}

// The id of the newest message in #general whose body is `body`.
async function idOf(node, body) {
  return eventually(`the id of ${JSON.stringify(body)}`, async () => {
    const r = await nodeApi(node, 'GET', '/channels/general/messages?limit=200');
    const m = r.body.messages.filter((x) => x.body === body).pop();
    return m && m.id;
  });
}

async function openGeneral(u, node) {
  await u.page.goto(node.webUrl);
  await chanItem(u.page, 'general').click();
  await u.page.locator('#composer-input:not([disabled])').waitFor();
}

before(async () => {
  ({ server, nodeA, nodeB } = await aliceAndBob(PASSWORD));
  browser = await launch();
  alice = await newUser(browser, 'alice');
  bob = await newUser(browser, 'bob');
  // Alice's browser notifications are a stand-in that records what is
  // shown and whether permission was asked (headless Chromium has none).
  await alice.context.addInitScript(() => {
    window.__notes = [];
    window.__asked = 0;
    class FakeNotification {
      static permission = 'default';
      static requestPermission() { window.__asked++; FakeNotification.permission = 'granted'; return Promise.resolve('granted'); }
      constructor(title, opts) { window.__notes.push({ title, body: opts && opts.body }); }
      close() {}
    }
    window.Notification = FakeNotification;
  });
  await openGeneral(alice, nodeA);
  await openGeneral(bob, nodeB);
  await eventually('bob is linked to the host', async () => (await bob.page.locator('#link-state').getAttribute('data-via')) === 'host', 30000);
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

test('the node has the message API this UI uses', async () => {
  // A plain check first, so a missing backend fails with a clear reason.
  const sent = await nodeApi(nodeA, 'POST', '/channels/general/messages', { body: 'api check' });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  for (const k of ['reply_to', 'quote', 'edited_ms', 'deleted', 'reactions', 'mentions_me']) {
    assert.ok(k in sent.body.message, `a message row has ${k}: ${JSON.stringify(sent.body.message)}`);
  }
  const del = await nodeApi(nodeA, 'DELETE', `/channels/general/messages/${encodeURIComponent(sent.body.message.id)}`);
  assert.equal(del.status, 202, JSON.stringify(del.body));
  assert.equal(del.body.message.deleted, true);
  assert.equal(del.body.message.body, '');
});

test('markdown renders, spoilers hide until revealed, links are safe, hostile text stays text', async () => {
  const body = [
    'Release **notes** for _today_, ~~not~~ ready:',
    '```',
    'cargo build --release',
    '<b>not bold</b>',
    '```',
    '> quoted **line**',
    'The ending: ||the butler did it|| · docs at https://example.com/docs?x=1.',
  ].join('\n');
  await send(alice.page, body);
  const hostile = '<img src=x onerror="window.__pwned=1"> and [click](javascript:window.__pwned=2) and <script>window.__pwned=3</script>';
  const r = await nodeApi(nodeA, 'POST', '/channels/general/messages', { body: hostile });
  assert.equal(r.status, 202, JSON.stringify(r.body));

  const { page } = bob;
  const m = msg(page, 'Release');
  await m.waitFor();
  assert.equal(await m.locator('.body strong').first().textContent(), 'notes');
  assert.equal(await m.locator('.body em').first().textContent(), 'today');
  assert.equal(await m.locator('.body s').first().textContent(), 'not');
  assert.equal(await m.locator('.body pre code').textContent(), 'cargo build --release\n<b>not bold</b>');
  assert.equal(await m.locator('.body pre b').count(), 0, 'HTML in a code block is text');
  assert.match(await m.locator('.body blockquote').textContent(), /quoted line/);
  assert.equal(await m.locator('.body blockquote strong').textContent(), 'line');

  // The spoiler: hidden, a button by name, shown on a click.
  const spoiler = m.locator('.spoiler');
  assert.equal(await spoiler.getAttribute('role'), 'button');
  assert.match(await spoiler.getAttribute('aria-label'), /Spoiler, hidden/);
  assert.equal(await spoiler.locator('.spoiler-text').isVisible(), false, 'the spoiler text is not shown');
  await screenshots(page, '20-markdown-spoiler-hidden');
  await page.setViewportSize(DESKTOP);
  await spoiler.click();
  await eventually('the spoiler shown', async () => /revealed/.test(await m.locator('.spoiler').getAttribute('class')));
  assert.equal(await m.locator('.spoiler .spoiler-text').isVisible(), true);
  assert.equal(await m.locator('.spoiler .spoiler-text').textContent(), 'the butler did it');
  assert.equal(await m.locator('.spoiler').getAttribute('role'), null, 'shown, it is text again');

  // The link: the address only, opened in a new tab, without the referrer.
  const link = m.locator('a.md-link');
  assert.equal(await link.getAttribute('href'), 'https://example.com/docs?x=1');
  assert.equal(await link.textContent(), 'https://example.com/docs?x=1');
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow');

  // Hostile text is shown as typed, and nothing in it ran or linked.
  const h = msg(page, 'onerror');
  await h.waitFor();
  assert.equal(await h.locator('.body').textContent(), hostile);
  assert.equal(await h.locator('.body img, .body script, .body a').count(), 0);
  assert.equal(await page.locator('#timeline a[href^="javascript:" i]').count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await screenshots(page, '21-markdown');
  await page.setViewportSize(DESKTOP);
  // A spoiler stays shown while the timeline is drawn again.
  await send(bob.page, 'spoiler stays shown');
  assert.match(await m.locator('.spoiler').getAttribute('class'), /revealed/);
});

test('bob replies; alice sees the quote and jumps to the original, loading older history', async () => {
  await send(alice.page, 'The plan is on the wiki, page three.');
  const original = await idOf(nodeA, 'The plan is on the wiki, page three.');
  const { page } = bob;
  const target = msg(page, 'The plan is on the wiki');
  await target.waitFor();
  await target.hover();
  await target.locator('.act-reply').click();
  const bar = page.locator('#reply-bar');
  await bar.waitFor();
  assert.match(await bar.textContent(), /Replying to alice: The plan is on the wiki, page three\./);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input', 'the box has focus');
  // Escape cancels; Reply again and send.
  await page.keyboard.press('Escape');
  await bar.waitFor({ state: 'detached' });
  await target.hover();
  await target.locator('.act-reply').click();
  await bar.waitFor();
  await page.locator('#composer-input').fill('Found it, thanks!');
  await page.locator('#composer-input').press('Enter');
  await bar.waitFor({ state: 'detached' });
  const sent = await idOf(nodeB, 'Found it, thanks!');
  const row = (await nodeApi(nodeB, 'GET', '/channels/general/messages?limit=200')).body.messages.find((x) => x.id === sent);
  assert.equal(row.reply_to, original, 'sent as a reply');

  // Alice sees the quote above the reply.
  const reply = msg(alice.page, 'Found it, thanks!');
  await reply.waitFor();
  const quote = reply.locator('.reply-quote');
  assert.match(await quote.textContent(), /alice.*The plan is on the wiki, page three\./);

  // Much later (past the first page of history), another reply quotes it.
  for (let i = 1; i <= 60; i++) {
    const f = await nodeApi(nodeB, 'POST', '/channels/general/messages', { body: `filler ${i}` });
    assert.equal(f.status, 202, JSON.stringify(f.body));
  }
  const late = await nodeApi(nodeB, 'POST', '/channels/general/messages', { body: 'Back to the plan: agreed.', reply_to: original });
  assert.equal(late.status, 202, JSON.stringify(late.body));
  assert.equal(late.body.message.quote.id, original);
  // A fresh load: only the newest page is there, the original is not.
  await openGeneral(alice, nodeA);
  const lateMsg = msg(alice.page, 'Back to the plan: agreed.');
  await lateMsg.waitFor({ timeout: 30000 });
  const orig = alice.page.locator(`#timeline article.msg[data-id="${original}"]`);
  assert.equal(await orig.count(), 0, 'the original is not loaded yet');
  await lateMsg.locator('.reply-quote').click();
  await orig.waitFor({ timeout: 30000 });
  await eventually('the original on screen, focused and flashed', async () => orig.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const t = document.getElementById('timeline').getBoundingClientRect();
    return r.top >= t.top - 1 && r.bottom <= t.bottom + 1 && document.activeElement === el && el.classList.contains('flash');
  }));
  await screenshots(alice.page, '22-reply-jump', {
    desktop: async () => orig.evaluate((el) => el.scrollIntoView({ block: 'center' })),
    phone: async () => orig.evaluate((el) => el.scrollIntoView({ block: 'center' })),
  });
  await alice.page.setViewportSize(DESKTOP);
});

test('alice edits her message and bob sees the new text, marked (edited)', async () => {
  await openGeneral(alice, nodeA);
  await send(alice.page, 'Meeting at 10:00 tomorrow.');
  const id = await idOf(nodeA, 'Meeting at 10:00 tomorrow.');
  await msg(bob.page, 'Meeting at 10:00').waitFor();
  const { page } = alice;
  // ↑ in the empty box edits her last message; Escape leaves it as it was.
  await page.locator('#composer-input').click();
  await page.locator('#composer-input').press('ArrowUp');
  const editor = page.locator(`#timeline article.msg[data-id="${id}"] .edit-input`);
  await editor.waitFor();
  assert.equal(await editor.inputValue(), 'Meeting at 10:00 tomorrow.');
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('edit-input')), true);
  await editor.press('Escape');
  await editor.waitFor({ state: 'detached' });
  assert.equal(await msg(page, 'Meeting at 10:00 tomorrow.').count(), 1, 'unchanged');

  // Edit from the toolbar: Enter saves.
  const mine = page.locator(`#timeline article.msg[data-id="${id}"]`);
  await mine.hover();
  await mine.locator('.act-edit').click();
  await editor.waitFor();
  await editor.fill('Meeting at **11:00** tomorrow (moved).');
  await screenshots(page, '23-editing');
  await page.setViewportSize(DESKTOP);
  await editor.press('Enter');
  await editor.waitFor({ state: 'detached' });

  const theirs = bob.page.locator(`#timeline article.msg[data-id="${id}"]`);
  await eventually('bob sees the edit', async () => /Meeting at 11:00 tomorrow \(moved\)\./.test(await theirs.locator('.body').textContent()));
  assert.equal(await theirs.locator('.body strong').textContent(), '11:00');
  const edited = theirs.locator('.edited');
  assert.equal(await edited.textContent(), '(edited)');
  assert.match(await edited.getAttribute('title'), /^Edited /);
  assert.equal(await theirs.getAttribute('data-edited'), 'true');
  // Only one message: an edit is not a new message.
  assert.equal(await bob.page.locator('#timeline article.msg', { hasText: 'Meeting at' }).count(), 1);
  // Bob cannot edit alice's message.
  await theirs.hover();
  assert.equal(await theirs.locator('.act-edit').count(), 0);
  const row = (await nodeApi(nodeB, 'GET', '/channels/general/messages?limit=50')).body.messages.find((x) => x.id === id);
  assert.equal(row.body, 'Meeting at **11:00** tomorrow (moved).');
  assert.ok(row.edited_ms > 0);
});

test('alice deletes a message after confirming, and bob sees it removed', async () => {
  const { page } = alice;
  await send(page, 'Oops, wrong channel for this one.');
  const id = await idOf(nodeA, 'Oops, wrong channel for this one.');
  const theirs = bob.page.locator(`#timeline article.msg[data-id="${id}"]`);
  await theirs.waitFor();
  const mine = page.locator(`#timeline article.msg[data-id="${id}"]`);
  await mine.hover();
  await mine.locator('.act-delete').click();
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Delete your message\?.*Oops, wrong channel/);
  // Cancel keeps it.
  await page.locator('#confirm-cancel').click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await mine.getAttribute('data-deleted'), null);
  await mine.hover();
  await mine.locator('.act-delete').click();
  await screenshots(page, '24-delete-confirm');
  await page.setViewportSize(DESKTOP);
  await page.locator('#confirm-ok').click();

  await eventually('bob sees it deleted', async () => (await theirs.getAttribute('data-deleted')) === 'true');
  assert.equal(await theirs.locator('.body').textContent(), 'message deleted');
  assert.match(await theirs.locator('.body').getAttribute('class'), /deleted/);
  assert.equal(await bob.page.locator('#timeline', { hasText: 'Oops, wrong channel' }).count(), 0, 'the text is gone');
  await theirs.hover();
  assert.equal(await theirs.locator('.msg-actions').count(), 0, 'no actions on a deleted message');
  await eventually('alice sees it deleted', async () => (await mine.getAttribute('data-deleted')) === 'true');

  // The owner of the channel (alice) may delete bob's messages; bob may
  // not delete hers.
  await send(bob.page, 'bob writes something');
  const bobs = msg(page, 'bob writes something');
  await bobs.waitFor();
  await bobs.hover();
  assert.equal(await bobs.locator('.act-delete').count(), 1);
  assert.equal(await bobs.locator('.act-edit').count(), 0);
  const hers = msg(bob.page, 'Meeting at');
  await hers.hover();
  assert.equal(await hers.locator('.act-delete').count(), 0);
});

test('bob reacts; alice sees the count and who, and toggles her own', async () => {
  await send(alice.page, 'Lunch at the new place?');
  const id = await idOf(nodeA, 'Lunch at the new place?');
  const { page } = bob;
  const theirs = page.locator(`#timeline article.msg[data-id="${id}"]`);
  await theirs.waitFor();
  await theirs.hover();
  await theirs.locator('.act-react').click();
  const picker = theirs.locator('.emoji-picker');
  await picker.waitFor();
  assert.equal(await picker.locator('.emoji-btn:not(.close)').count(), 8);
  // The picker takes the keyboard: focus is on its first emoji.
  assert.equal(await page.evaluate(() => document.activeElement.dataset.emoji), '👍');
  await picker.locator('.emoji-btn[data-emoji="👍"]').click();
  await picker.waitFor({ state: 'detached' });

  const chip = alice.page.locator(`#timeline article.msg[data-id="${id}"] .reaction[data-emoji="👍"]`);
  await chip.waitFor();
  assert.equal(await chip.locator('.reaction-count').textContent(), '1');
  assert.match(await chip.getAttribute('title'), /bob/);
  assert.equal(await chip.getAttribute('aria-pressed'), 'false');
  await chip.click();
  await eventually('alice\'s reaction counted', async () => (await chip.locator('.reaction-count').textContent()) === '2');
  assert.equal(await chip.getAttribute('aria-pressed'), 'true');
  assert.match(await chip.getAttribute('class'), /mine/);
  assert.match(await chip.getAttribute('title'), /bob and you|you and bob/);
  const bobsChip = theirs.locator('.reaction[data-emoji="👍"]');
  await eventually('bob sees two', async () => (await bobsChip.locator('.reaction-count').textContent()) === '2');
  await screenshots(alice.page, '25-reactions');
  await alice.page.setViewportSize(DESKTOP);
  await chip.click();
  await eventually('alice\'s reaction taken back', async () => (await chip.locator('.reaction-count').textContent()) === '1');
  assert.equal(await chip.getAttribute('aria-pressed'), 'false');
  const row = (await nodeApi(nodeA, 'GET', '/channels/general/messages?limit=50')).body.messages.find((x) => x.id === id);
  assert.deepEqual(row.reactions.map((x) => [x.emoji, x.count, x.users]), [['👍', 1, ['bob']]]);
});

test('the actions work from the keyboard', async () => {
  const { page } = bob;
  await send(alice.page, 'Keyboard people welcome. ||psst||');
  const m = msg(page, 'Keyboard people welcome.');
  await m.waitFor();
  await page.mouse.move(0, 0);
  await m.focus();
  // The toolbar shows while the message has focus; Tab walks into the
  // message: first its spoiler, which Enter shows.
  await eventually('the toolbar shown', async () => m.locator('.msg-actions').isVisible());
  await page.keyboard.press('Tab');
  assert.match(await page.evaluate(() => document.activeElement.className), /spoiler/);
  await page.keyboard.press('Enter');
  await eventually('the spoiler shown', async () => /revealed/.test(await m.locator('.spoiler').getAttribute('class')));
  assert.equal(await m.locator('.spoiler-text').textContent(), 'psst');
  let on = '';
  for (let i = 0; i < 8 && !on.includes('act-reply'); i++) {
    await page.keyboard.press('Tab');
    on = await page.evaluate(() => document.activeElement.className);
  }
  assert.match(on, /act-reply/);
  await page.keyboard.press('Enter');
  await page.locator('#reply-bar').waitFor();
  assert.match(await page.locator('#reply-bar').textContent(), /Replying to alice: Keyboard people welcome\./);
  await page.keyboard.press('Escape');
  await page.locator('#reply-bar').waitFor({ state: 'detached' });
  // The list is still a single tab stop.
  const stops = await page.evaluate(() => [...document.querySelectorAll('#timeline [tabindex="0"], #timeline button:not([tabindex="-1"]), #timeline a[href]:not([tabindex="-1"])')].length);
  assert.equal(stops, 1);
});

// Bob mentions alice while her tab is hidden, in another channel.
async function mentionedWhileHidden(page) {
  // Bob types "@al": the member list offers alice; Enter picks her.
  const box = bob.page.locator('#composer-input');
  await box.click();
  await box.fill('');
  await box.type('Question for @al');
  const list = bob.page.locator('#mention-list');
  await list.waitFor();
  assert.equal(await list.getAttribute('role'), 'listbox');
  assert.equal(await list.locator('[role=option]').first().getAttribute('data-username'), 'alice');
  assert.equal(await box.getAttribute('aria-activedescendant'), 'mention-opt-0');
  assert.equal(await box.getAttribute('aria-controls'), 'mention-list');
  await screenshots(bob.page, '26-mention-autocomplete');
  await bob.page.setViewportSize(DESKTOP);
  await box.press('Enter');
  await list.waitFor({ state: 'hidden' });
  assert.equal(await box.inputValue(), 'Question for @alice ');
  assert.equal(await box.getAttribute('aria-activedescendant'), null);
  await box.type('can you review **this** today?');
  await box.press('Enter');
  // A plain message too, so unread and mentions differ.
  await send(bob.page, 'And a plain note for everyone.');

  // Alice: a red @1 apart from the unread count.
  const item = chanItem(page, 'general');
  const badge = item.locator('.mention-badge');
  await badge.waitFor({ timeout: 20000 });
  assert.equal(await badge.textContent(), '@1');
  await eventually('the unread count', async () => (await item.locator('.badge:not(.mention-badge)').textContent()) === '2');
  // Its name says it in words (the badges' text is part of it).
  assert.match(await item.evaluate((el) => el.textContent.replace(/\s+/g, ' ')), /general, Public channel, .*@1 mention of you, 2 unread/);
  const unread = (await nodeApi(nodeA, 'GET', '/unread')).body;
  assert.equal(unread.mentions.general, 1, JSON.stringify(unread));
  // The notification, while the tab was hidden.
  const notes = await page.evaluate(() => window.__notes);
  assert.equal(notes.length, 1, JSON.stringify(notes));
  assert.equal(notes[0].title, 'bob mentioned you in #general');
  assert.match(notes[0].body, /Question for @alice can you review this today\?/);
  await screenshots(page, '27-mention-badge', {
    phone: async () => { await page.locator('#sidebar-toggle').click(); await page.waitForTimeout(300); },
  });
  await page.setViewportSize(DESKTOP);
  await page.keyboard.press('Escape');
}

test('bob @mentions alice: autocomplete, a mention badge apart from unread, the highlight and a notification', async () => {
  const { page } = alice;
  // Nothing was asked on load; alice allows notifications from a click,
  // then reads another channel with the tab hidden.
  assert.equal(await page.evaluate(() => window.__asked), 0, 'no permission prompt on load');
  const enable = page.locator('#enable-notifications');
  await enable.click();
  await enable.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => window.__asked), 1);
  assert.equal(await page.evaluate(() => window.Notification.permission), 'granted');
  await chanItem(page, 'random').click();
  await page.locator('#chan-title', { hasText: 'random' }).waitFor();
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
  });
  try {
    await mentionedWhileHidden(page);
  } finally {
    await page.evaluate(() => {
      delete document.hidden;
      delete document.visibilityState;
    });
  }

  // Opening the channel: the message is highlighted, the mention marked.
  const item = chanItem(page, 'general');
  const id = await idOf(nodeA, 'Question for @alice can you review **this** today?');
  await item.click();
  const m = page.locator(`#timeline article.msg[data-id="${id}"]`);
  await m.waitFor();
  assert.match(await m.getAttribute('class'), /mentions-me/);
  assert.equal(await m.locator('.mention.me').textContent(), '@alice');
  assert.equal(await page.locator('#timeline article.msg.mentions-me', { hasText: 'plain note' }).count(), 0);
  await item.locator('.mention-badge').waitFor({ state: 'detached' });
  await screenshots(page, '28-mention-highlight');
  await page.setViewportSize(DESKTOP);
});

test('on a phone a tap shows the actions', async () => {
  const { page } = bob;
  await page.setViewportSize(PHONE);
  const m = msg(page, 'Lunch at the new place?');
  await m.scrollIntoViewIfNeeded();
  await m.locator('.body').click();
  await eventually('the toolbar after a tap', async () => /show-actions/.test(await m.getAttribute('class')));
  assert.equal(await m.locator('.msg-actions').isVisible(), true);
  await page.waitForTimeout(300);
  await screenshots(page, '29-phone-actions', {
    phone: async () => {
      if (!/show-actions/.test(await m.getAttribute('class'))) await m.locator('.body').click();
      await m.scrollIntoViewIfNeeded();
    },
  });
  await page.setViewportSize(PHONE);
  await m.locator('.act-reply').click();
  await page.locator('#reply-bar').waitFor();
  await page.locator('#reply-cancel').click();
  await page.locator('#reply-bar').waitFor({ state: 'detached' });
  await page.setViewportSize(DESKTOP);
});

test('the features have no serious or critical accessibility violation, dark and light', async () => {
  const { page } = alice;
  const problems = [];
  // A timeline with markdown, a spoiler, a reply, an edit, a deleted
  // message, reactions and a mention; a toolbar and the picker open.
  const lunch = msg(page, 'Lunch at the new place?');
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [width, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      await page.setViewportSize(size);
      if (width === 'phone') await page.keyboard.press('Escape');
      await lunch.scrollIntoViewIfNeeded();
      await lunch.hover();
      await page.waitForTimeout(200);
      const v = await axeViolations(page);
      if (v.length) problems.push(`${width}, ${scheme}:\n  ${describeViolations(v).replace(/\n/g, '\n  ')}`);
    }
  }
  // The picker and the mention list.
  await page.setViewportSize(DESKTOP);
  await lunch.hover();
  await lunch.locator('.act-react').click();
  await lunch.locator('.emoji-picker').waitFor();
  await page.locator('#composer-input').fill('@bo');
  await page.locator('#mention-list').waitFor();
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    const v = await axeViolations(page);
    if (v.length) problems.push(`picker and mention list, ${scheme}:\n  ${describeViolations(v).replace(/\n/g, '\n  ')}`);
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.locator('#composer-input').fill('');
  assert.equal(problems.length, 0, `accessibility violations:\n${problems.join('\n')}`);
});
