// Direct messages, end to end: a real server and two real nodes (ann and
// bob, who share no channel), each in its own headless Chromium profile.
// Ann writes to bob by name ("+" in Direct messages); bob's sidebar shows
// the conversation with an unread badge at once, he opens it and reads
// the text (markdown drawn, markup never run), and ann sees her message
// move to "Read"; his reply reaches her live. At phone width bob opens
// it from the channel list and answers through "Message" in the friends
// panel. A message to a name nobody has says so and keeps the text. A
// long conversation: the badge counts 50, the newest page shows first,
// older ones load on scrolling up, and the list is one tab stop. A
// message has the features of a channel's: ann replies to bob's (he
// sees the quote and goes to the original), edits hers (he sees the new
// text and "(edited)"), bob reacts (ann sees the chip and its count;
// toggling takes reactions back), ann deletes one after confirming (bob
// sees it deleted, and the quote in his reply to it too); from the
// keyboard, and on a phone with a tap. axe finds nothing serious, at
// desktop and phone width, dark and light. Screenshots go to
// ../screenshots/ (42 to 50).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, startNode, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP, PHONE } from '../lib/browser.js';
import { axeViolations, describeViolations } from '../lib/axe.js';

const PASSWORD = 'correct horse battery';
let server, nodeA, nodeB, browser, ann, bob;
const procs = () => [nodeA, nodeB, server].filter(Boolean);

// The conversation with `name` in the sidebar, and its unread badge.
const dmItem = (page, name) => page.locator(`#dm-list .chan[data-dm="${name}"]`);
const badge = (page, name) => dmItem(page, name).locator('.badge');
// A message in the open conversation.
const msg = (page, text) => page.locator('#timeline article.msg', { hasText: text });

// Opens the channel list on a phone (where it is a drawer).
async function sidebar(page) {
  if (await page.locator('#sidebar-toggle').isVisible()) {
    await page.locator('#sidebar-toggle').click();
    await page.locator('.layout.sidebar-open').waitFor();
  }
}

async function send(page, text) {
  const box = page.locator('#composer-input');
  await box.fill(text);
  await box.press('Enter');
}

// Runs axe at both widths and in both themes; `prepare` runs after each
// change of width (a phone closes what covers the conversation).
async function check(page, screen, prepare = async () => {}) {
  const found = [];
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [width, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      await page.setViewportSize(size);
      await page.waitForTimeout(200);
      await prepare(width);
      const v = await axeViolations(page);
      if (v.length) found.push(`${screen}, ${width}, ${scheme}:\n  ${describeViolations(v).replace(/\n/g, '\n  ')}`);
    }
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(200);
  return found;
}

// The node has published its device keys (others can seal for it).
function keysPublished(node) {
  return eventually(`${node.name} publishes its device keys`, async () => {
    try {
      return readFileSync(path.join(node.dir, 'logs', 'segchat.log'), 'utf8').includes('KEYS_PUBLISHED');
    } catch { return false; }
  }, 30000);
}

before(async () => {
  server = await startServer();
  [nodeA, nodeB] = await Promise.all([startNode('ann-node', server.addr), startNode('bob-node', server.addr)]);
  for (const n of [nodeA, nodeB]) {
    await eventually('the node reaches the server', async () => (await nodeApi(n, 'GET', '/node')).body.server_connected);
  }
  for (const [n, name] of [[nodeA, 'ann'], [nodeB, 'bob']]) {
    const r = await nodeApi(n, 'POST', '/session/register', { username: name, password: PASSWORD });
    assert.ok(r.status < 300, `register ${name}: ${JSON.stringify(r.body)}`);
  }
  await Promise.all([keysPublished(nodeA), keysPublished(nodeB)]);
  // Somewhere else for bob to be: a channel of ann's.
  const created = await nodeApi(nodeA, 'POST', '/channels', { name: 'lobby', visibility: 'public' });
  assert.ok(created.status < 300, JSON.stringify(created.body));
  browser = await launch();
  ann = await newUser(browser, 'ann', { quiet: /status of 404/ });
  bob = await newUser(browser, 'bob');
  for (const [u, node] of [[ann, nodeA], [bob, nodeB]]) {
    await u.page.goto(node.webUrl);
    await u.page.locator('#dm-new').waitFor();
  }
  await bob.page.locator('.chan[data-channel="lobby"]').click();
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

test('a direct message arrives with an unread badge, is read, and the reply comes back live', async () => {
  const { page } = ann;
  await page.locator('#dm-new').click();
  await page.locator('#dm-new-name').fill('bob');
  await page.locator('#dm-new-open').click();
  await page.locator('#chan-title', { hasText: 'bob' }).waitFor();
  await dmItem(page, 'bob').and(page.locator('[aria-current=page]')).waitFor();
  await eventually('the message box has focus', () => page.evaluate(() => document.activeElement && document.activeElement.id === 'composer-input'));
  await page.locator('.dm-start', { hasText: 'beginning of your direct messages with bob' }).waitFor();

  // Enter sends; markdown is drawn, markup stays text.
  await page.keyboard.type('Hello **bob** <img src=x onerror="window.__owned=1">');
  await page.keyboard.press('Enter');
  const mine = msg(page, 'Hello');
  await mine.waitFor();
  assert.equal(await page.locator('#composer-input').inputValue(), '', 'the box is cleared');
  assert.equal(await mine.locator('.body strong').textContent(), 'bob');
  assert.equal(await mine.locator('img').count(), 0, 'no element from the text');
  assert.match(await mine.locator('.body').textContent(), /<img src=x onerror=/);
  await eventually('it leaves ann\'s node', async () => ['sent', 'delivered', 'read'].includes(await mine.getAttribute('data-state')));

  // Bob, in #lobby: the conversation appears with a badge, live.
  await badge(bob.page, 'ann').filter({ hasText: '1' }).waitFor();
  assert.match(await bob.page.title(), /^\(1\) /, 'counted in the tab title');
  await eventually('ann sees it delivered', async () => ['delivered', 'read'].includes(await mine.getAttribute('data-state')));
  await dmItem(bob.page, 'ann').click();
  await bob.page.locator('#chan-title', { hasText: 'ann' }).waitFor();
  const got = msg(bob.page, 'Hello');
  await got.waitFor();
  assert.equal(await got.locator('.body strong').textContent(), 'bob');
  assert.equal(await got.locator('img').count(), 0);
  assert.equal(await got.locator('.tick').count(), 0, 'no delivery state on someone else\'s message');
  await eventually('the badge goes', async () => (await badge(bob.page, 'ann').count()) === 0);
  assert.equal(await bob.page.evaluate(() => window.__owned), undefined);

  // Ann: read, said in words too.
  await page.locator('#timeline article.msg[data-state="read"]', { hasText: 'Hello' }).waitFor();
  assert.equal(await mine.locator('.tick').getAttribute('aria-label'), 'Read');
  assert.match(await mine.locator('.tick').textContent(), /Read/);

  // Bob's reply reaches ann live; hers being open, it is read at once.
  await send(bob.page, 'Hi ann, all good here');
  await msg(page, 'all good here').waitFor();
  assert.equal(await badge(page, 'bob').count(), 0, 'no badge on the open conversation');
  await bob.page.locator('#timeline article.msg[data-state="read"]', { hasText: 'all good here' }).waitFor();
  // The list: newest first, the last message as its tooltip.
  assert.match(await dmItem(page, 'bob').getAttribute('title'), /bob: Hi ann/);

  // The history is the node's: a reload shows it again.
  await page.reload();
  await page.locator('#chan-title', { hasText: 'bob' }).waitFor();
  await msg(page, 'all good here').waitFor();
  await msg(page, 'Hello').waitFor();

  const problems = await check(page, 'conversation');
  assert.deepEqual(problems, [], problems.join('\n'));
  await screenshots(page, '42-dm');
});

test('at phone width: opened from the channel list, answered from the friends panel', async () => {
  // Friends, so the friends panel offers "Message".
  assert.ok((await nodeApi(nodeA, 'POST', '/friends/bob')).status < 300);
  assert.ok((await nodeApi(nodeB, 'POST', '/friends/ann/accept')).status < 300);
  await bob.page.setViewportSize(PHONE);
  await ann.page.setViewportSize(PHONE);
  await bob.page.waitForTimeout(250);
  await sidebar(bob.page);
  await bob.page.locator('.chan[data-channel="lobby"]').click();
  await bob.page.locator('#chan-title', { hasText: 'lobby' }).waitFor();

  await send(ann.page, 'Sent from a phone');
  const mine = msg(ann.page, 'Sent from a phone');
  await mine.waitFor();
  await sidebar(bob.page);
  await badge(bob.page, 'ann').filter({ hasText: '1' }).waitFor();
  // Ann shows online beside her name (they are friends now).
  await dmItem(bob.page, 'ann').locator('.presence.online').waitFor();
  await screenshots(bob.page, '43-dm-list', { phone: () => sidebar(bob.page) });
  await dmItem(bob.page, 'ann').click();
  await bob.page.locator('.layout:not(.sidebar-open)').waitFor();
  await msg(bob.page, 'Sent from a phone').waitFor();
  assert.ok(await msg(bob.page, 'Sent from a phone').isVisible(), 'the conversation is on screen');
  await ann.page.locator('#timeline article.msg[data-state="read"]', { hasText: 'Sent from a phone' }).waitFor();

  // Back to #lobby, then "Message" on ann in the friends panel.
  await sidebar(bob.page);
  await bob.page.locator('.chan[data-channel="lobby"]').click();
  await sidebar(bob.page);
  await bob.page.locator('#friends-open').click();
  await bob.page.locator('#friends-tab-all').click();
  await bob.page.locator('#friend-list li[data-username="ann"] [data-action=message]').click();
  await bob.page.locator('.layout:not(.panel-open)').waitFor();
  await bob.page.locator('#chan-title', { hasText: 'ann' }).waitFor();
  await send(bob.page, 'Answered from the friends panel');
  await msg(ann.page, 'Answered from the friends panel').waitFor();

  const problems = await check(bob.page, 'conversation at phone width');
  assert.deepEqual(problems, [], problems.join('\n'));
  await screenshots(bob.page, '44-dm-phone');
  await bob.page.setViewportSize(DESKTOP);
  await ann.page.setViewportSize(DESKTOP);
});

test('a direct message to a name nobody has says so and keeps the text', async () => {
  const { page } = ann;
  await page.waitForTimeout(200);
  await page.locator('#dm-new').click();
  // A name that cannot be one is caught in the dialog.
  await page.locator('#dm-new-name').fill('x');
  await page.locator('#dm-new-open').click();
  await page.locator('#dm-new-error', { hasText: 'username is 3 to 32' }).waitFor();
  await page.locator('#dm-new-name').fill('nobody-here');
  await page.locator('#dm-new-open').click();
  await page.locator('#chan-title', { hasText: 'nobody-here' }).waitFor();
  await send(page, 'is anyone there?');
  const error = page.locator('#send-error');
  await error.filter({ hasText: 'no user named' }).waitFor();
  assert.match(await error.textContent(), /^Not sent: no user named "nobody-here"/);
  assert.equal(await page.locator('#composer-input').inputValue(), 'is anyone there?', 'the text stays');
  assert.equal(await page.locator('#timeline article.msg').count(), 0, 'nothing kept');
  const problems = await check(page, 'send error');
  assert.deepEqual(problems, [], problems.join('\n'));
  await screenshots(page, '45-dm-error');

  // Gone from the list once left, as it holds nothing.
  await dmItem(page, 'bob').click();
  await eventually('the empty conversation leaves the list', async () => (await dmItem(page, 'nobody-here').count()) === 0);
});

test('a long conversation: unread counted, older messages paged in, one tab stop', async () => {
  const { page } = ann;
  await page.locator('.chan[data-channel="lobby"]').click();
  await page.locator('#chan-title', { hasText: 'lobby' }).waitFor();
  // 50 more (the server limits how fast a node may send: a few a second).
  for (let i = 0; i < 50; i++) {
    const r = await nodeApi(nodeB, 'POST', '/dms/ann', { text: `line number ${i}` });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await new Promise((res) => setTimeout(res, 150));
  }
  await badge(page, 'bob').filter({ hasText: '50' }).waitFor({ timeout: 90000 });
  // Counted by the node: a fresh page shows the same.
  await page.reload();
  await badge(page, 'bob').filter({ hasText: '50' }).waitFor();
  await dmItem(page, 'bob').click();
  await msg(page, 'line number 49').waitFor();
  await eventually('the badge goes', async () => (await badge(page, 'bob').count()) === 0);
  // The newest page (50) only, until scrolled up.
  await msg(page, 'line number 0').waitFor();
  assert.equal(await msg(page, 'all good here').count(), 0);
  await eventually('older pages load on scroll', async () => {
    await page.locator('#timeline').evaluate((t) => { t.scrollTop = 0; t.dispatchEvent(new Event('scroll')); });
    return (await msg(page, 'all good here').count()) === 1 && (await page.locator('.dm-start').count()) === 1;
  });

  // The list is one tab stop; arrows move through it.
  const stops = await page.evaluate(() => [...document.querySelectorAll('#timeline [tabindex="0"], #timeline button:not([tabindex="-1"]), #timeline a[href]:not([tabindex="-1"])')].length);
  assert.equal(stops, 1);
  await page.evaluate(() => document.querySelector('#timeline article.msg[tabindex="0"]').focus());
  assert.match(await page.evaluate(() => document.activeElement.textContent), /line number 49/);
  await page.keyboard.press('ArrowUp');
  assert.match(await page.evaluate(() => document.activeElement.textContent), /line number 48/);
  await page.keyboard.press('Escape');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
});

// A message whose own text (not a quote of it) holds `text`.
const said = (page, text) => page.locator('#timeline article.msg').filter({ has: page.locator('.body', { hasText: text }) });

// The row with text `text` in `node`'s history with `name`.
async function rowOf(node, name, text) {
  return eventually(`the row ${JSON.stringify(text)}`, async () => {
    const r = await nodeApi(node, 'GET', `/dms/${name}?limit=200`);
    return r.body.messages.filter((x) => x.text === text).pop();
  });
}

// Both with the conversation open, at desktop width.
async function bothOpen() {
  for (const [u, other] of [[ann, 'bob'], [bob, 'ann']]) {
    await u.page.setViewportSize(DESKTOP);
    await dmItem(u.page, other).click();
    await u.page.locator('#chan-title', { hasText: other }).waitFor();
  }
}

test('the node has the direct-message API this UI uses', async () => {
  // A plain check first, so a missing backend fails with a clear reason.
  const sent = await nodeApi(nodeA, 'POST', '/dms/bob', { text: 'api check' });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  for (const k of ['reply_to', 'quote', 'edited_ms', 'deleted', 'reactions']) {
    assert.ok(k in sent.body.message, `a DM row has ${k}: ${JSON.stringify(sent.body.message)}`);
  }
  const del = await nodeApi(nodeA, 'DELETE', `/dms/bob/messages/${encodeURIComponent(sent.body.message.id)}`);
  assert.equal(del.status, 202, JSON.stringify(del.body));
  assert.equal(del.body.message.deleted, true);
  assert.equal(del.body.message.text, '');
});

test('ann replies to bob; bob sees the quote and goes to the original', async () => {
  await bothOpen();
  await send(bob.page, 'Are we still on for Friday?');
  const original = (await rowOf(nodeB, 'ann', 'Are we still on for Friday?')).id;
  const { page } = ann;
  const target = said(page, 'Are we still on for Friday?');
  await target.waitFor();
  await target.hover();
  await target.locator('.act-reply').click();
  const bar = page.locator('#reply-bar');
  await bar.waitFor();
  assert.match(await bar.textContent(), /Replying to bob: Are we still on for Friday\?/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input', 'the box has focus');
  // Escape cancels; Reply again and send.
  await page.keyboard.press('Escape');
  await bar.waitFor({ state: 'detached' });
  await target.hover();
  await target.locator('.act-reply').click();
  await bar.waitFor();
  await page.keyboard.type('Yes, Friday at noon.');
  await page.keyboard.press('Enter');
  await bar.waitFor({ state: 'detached' });
  const row = await rowOf(nodeA, 'bob', 'Yes, Friday at noon.');
  assert.equal(row.reply_to, original, 'sent as a reply');
  assert.equal(row.quote && row.quote.id, original, JSON.stringify(row));

  // Bob: the quote above the reply names the original and shows it.
  const reply = said(bob.page, 'Yes, Friday at noon.');
  await reply.waitFor();
  const quote = reply.locator('.reply-quote');
  assert.match(await quote.textContent(), /bob.*Are we still on for Friday\?/);
  await quote.click();
  await eventually('the original focused and flashed', async () => bob.page.evaluate((id) => {
    const el = document.activeElement;
    return !!el && el.dataset.id === id && el.classList.contains('flash');
  }, original));
  await screenshots(bob.page, '46-dm-reply');
});

test('ann edits her message and bob sees the new text, marked (edited)', async () => {
  const { page } = ann;
  const id = (await rowOf(nodeA, 'bob', 'Yes, Friday at noon.')).id;
  // ↑ in the empty box edits her last message; Escape leaves it as it was.
  await page.locator('#composer-input').click();
  await page.locator('#composer-input').press('ArrowUp');
  const editor = page.locator(`#timeline article.msg[data-id="${id}"] .edit-input`);
  await editor.waitFor();
  assert.equal(await editor.inputValue(), 'Yes, Friday at noon.');
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('edit-input')), true);
  await editor.press('Escape');
  await editor.waitFor({ state: 'detached' });

  // From the toolbar: Enter saves.
  const mine = page.locator(`#timeline article.msg[data-id="${id}"]`);
  await mine.hover();
  await mine.locator('.act-edit').click();
  await editor.waitFor();
  await editor.fill('Yes, Friday at **1 pm** (moved).');
  await screenshots(page, '47-dm-editing');
  await editor.press('Enter');
  await editor.waitFor({ state: 'detached' });
  assert.match(await mine.locator('.body').textContent(), /Friday at 1 pm \(moved\)/);

  const theirs = bob.page.locator(`#timeline article.msg[data-id="${id}"]`);
  await eventually('bob sees the edit', async () => /Yes, Friday at 1 pm \(moved\)\./.test(await theirs.locator('.body').textContent()));
  assert.equal(await theirs.locator('.body strong').textContent(), '1 pm');
  assert.equal(await theirs.locator('.edited').textContent(), '(edited)');
  assert.match(await theirs.locator('.edited').getAttribute('title'), /^Edited /);
  assert.equal(await theirs.getAttribute('data-edited'), 'true');
  // An edit is not a new message; the quote of bob's message stays.
  assert.equal(await bob.page.locator('#timeline article.msg', { hasText: 'Yes, Friday at' }).count(), 1);
  assert.match(await theirs.locator('.reply-quote').textContent(), /Are we still on for Friday\?/);
  // Bob can neither edit nor delete ann's message.
  await theirs.hover();
  await theirs.locator('.act-reply').waitFor();
  assert.equal(await theirs.locator('.act-edit, .act-delete').count(), 0);
  const row = (await nodeApi(nodeB, 'GET', '/dms/ann?limit=50')).body.messages.find((x) => x.id === id);
  assert.equal(row.text, 'Yes, Friday at **1 pm** (moved).');
  assert.ok(row.edited_ms > 0, JSON.stringify(row));
});

test('bob reacts; ann sees the chip and its count, and toggling takes reactions back', async () => {
  const id = (await rowOf(nodeA, 'bob', 'Yes, Friday at **1 pm** (moved).')).id;
  const theirs = bob.page.locator(`#timeline article.msg[data-id="${id}"]`);
  await theirs.hover();
  await theirs.locator('.act-react').click();
  const picker = theirs.locator('.emoji-picker');
  await picker.waitFor();
  assert.equal(await bob.page.evaluate(() => document.activeElement.classList.contains('emoji-btn')), true, 'the picker has focus');
  await picker.locator('.emoji-btn[data-emoji="👍"]').click();
  await picker.waitFor({ state: 'detached' });
  const bobChip = theirs.locator('.reaction[data-emoji="👍"]');
  await eventually('bob\'s chip', async () => (await bobChip.count()) === 1 && (await bobChip.getAttribute('aria-pressed')) === 'true');
  assert.equal(await bobChip.locator('.reaction-count').textContent(), '1');

  const mine = ann.page.locator(`#timeline article.msg[data-id="${id}"]`);
  const annChip = mine.locator('.reaction[data-emoji="👍"]');
  await eventually('ann sees bob\'s reaction', async () => (await annChip.count()) === 1);
  assert.equal(await annChip.locator('.reaction-count').textContent(), '1');
  assert.equal(await annChip.getAttribute('aria-pressed'), 'false');
  assert.match(await annChip.getAttribute('aria-label'), /thumbs up, 1 reaction by bob/);
  // Ann adds hers with the chip (2), and takes it back (1).
  await annChip.click();
  await eventually('two, one of them ann\'s', async () => (await annChip.locator('.reaction-count').textContent()) === '2' && (await annChip.getAttribute('aria-pressed')) === 'true');
  await eventually('bob sees two', async () => (await bobChip.locator('.reaction-count').textContent()) === '2');
  await screenshots(ann.page, '48-dm-reactions');
  await annChip.click();
  await eventually('one again', async () => (await annChip.locator('.reaction-count').textContent()) === '1' && (await annChip.getAttribute('aria-pressed')) === 'false');
  // Bob takes his back: the chip goes on both sides.
  await eventually('bob sees one', async () => (await bobChip.locator('.reaction-count').textContent()) === '1');
  await bobChip.click();
  await eventually('bob\'s chip goes', async () => (await theirs.locator('.reaction').count()) === 0);
  await eventually('ann\'s chip goes', async () => (await mine.locator('.reaction').count()) === 0);
  const row = (await nodeApi(nodeA, 'GET', '/dms/bob?limit=50')).body.messages.find((x) => x.id === id);
  assert.deepEqual(row.reactions, [], JSON.stringify(row));
});

test('ann deletes a message after confirming; bob sees it deleted, and his reply\'s quote too', async () => {
  const { page } = ann;
  await send(page, 'This one goes away.');
  const id = (await rowOf(nodeA, 'bob', 'This one goes away.')).id;
  const theirs = bob.page.locator(`#timeline article.msg[data-id="${id}"]`);
  await theirs.waitFor();
  const answer = await nodeApi(nodeB, 'POST', '/dms/ann', { text: 'Noted, going away.', reply_to: id });
  assert.equal(answer.status, 202, JSON.stringify(answer.body));
  const reply = said(bob.page, 'Noted, going away.');
  await reply.waitFor();
  assert.match(await reply.locator('.reply-quote').textContent(), /This one goes away\./);

  const mine = page.locator(`#timeline article.msg[data-id="${id}"]`);
  await mine.hover();
  await mine.locator('.act-delete').click();
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Delete your message\?.*This one goes away\./);
  // Cancel keeps it.
  await page.locator('#confirm-cancel').click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await mine.getAttribute('data-deleted'), null);
  await mine.hover();
  await mine.locator('.act-delete').click();
  await dialog.waitFor();
  await screenshots(page, '49-dm-delete-confirm');
  await page.locator('#confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });

  await eventually('ann sees it deleted', async () => (await mine.getAttribute('data-deleted')) === 'true');
  await eventually('bob sees it deleted', async () => (await theirs.getAttribute('data-deleted')) === 'true');
  assert.equal(await theirs.locator('.body').textContent(), 'message deleted');
  assert.match(await theirs.locator('.body').getAttribute('class'), /deleted/);
  await eventually('the quote says so', async () => /message deleted/.test(await reply.locator('.reply-quote').textContent()));
  assert.equal(await bob.page.locator('#timeline .body', { hasText: 'This one goes away' }).count(), 0, 'the text is gone');
  await theirs.hover();
  assert.equal(await theirs.locator('.msg-actions').count(), 0, 'no actions on a deleted message');
  const row = (await nodeApi(nodeB, 'GET', '/dms/ann?limit=50')).body.messages.find((x) => x.id === id);
  assert.equal(row.deleted, true, JSON.stringify(row));
  assert.equal(row.text, '');
  const answerRow = (await nodeApi(nodeB, 'GET', '/dms/ann?limit=50')).body.messages.find((x) => x.text === 'Noted, going away.');
  assert.equal(answerRow.quote && answerRow.quote.deleted, true, `the node's quote follows: ${JSON.stringify(answerRow)}`);
});

test('the message actions from the keyboard, and on a phone with a tap', async () => {
  // Keyboard: the message, Tab to Reply, Enter; Escape cancels.
  const { page } = bob;
  const m = said(page, 'Yes, Friday at 1 pm');
  await m.evaluate((el) => el.focus());
  let on = '';
  for (let i = 0; i < 8 && !on.includes('act-reply'); i++) {
    await page.keyboard.press('Tab');
    on = await page.evaluate(() => document.activeElement.className);
  }
  assert.match(on, /act-reply/);
  await page.keyboard.press('Enter');
  await page.locator('#reply-bar').waitFor();
  assert.match(await page.locator('#reply-bar').textContent(), /Replying to ann: Yes, Friday at 1 pm/);
  await page.keyboard.press('Escape');
  await page.locator('#reply-bar').waitFor({ state: 'detached' });
  const stops = await page.evaluate(() => [...document.querySelectorAll('#timeline [tabindex="0"], #timeline button:not([tabindex="-1"]), #timeline a[href]:not([tabindex="-1"])')].length);
  assert.equal(stops, 1, 'the list is still one tab stop');

  // Phone: a tap shows the toolbar; reply and react from it.
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(250);
  await m.scrollIntoViewIfNeeded();
  await m.locator('.body').click();
  await eventually('the toolbar after a tap', async () => /show-actions/.test(await m.getAttribute('class')));
  assert.equal(await m.locator('.msg-actions').isVisible(), true);
  await screenshots(page, '50-dm-phone-actions', {
    phone: async () => {
      if (!/show-actions/.test(await m.getAttribute('class'))) await m.locator('.body').click();
      await m.scrollIntoViewIfNeeded();
    },
  });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(250);
  if (!/show-actions/.test(await m.getAttribute('class'))) await m.locator('.body').click();
  await m.locator('.act-reply').click();
  await page.locator('#reply-bar').waitFor();
  await send(page, 'From my phone: see you then.');
  await page.locator('#reply-bar').waitFor({ state: 'detached' });
  const answer = said(ann.page, 'From my phone: see you then.');
  await answer.waitFor();
  assert.match(await answer.locator('.reply-quote').textContent(), /ann.*Yes, Friday at 1 pm/);
  if (!/show-actions/.test(await m.getAttribute('class'))) await m.locator('.body').click();
  await m.locator('.act-react').click();
  await m.locator('.emoji-picker .emoji-btn[data-emoji="🎉"]').click();
  await m.locator('.reaction[data-emoji="🎉"]').waitFor();
  await ann.page.locator('#timeline article.msg .reaction[data-emoji="🎉"]').waitFor();
  await page.setViewportSize(DESKTOP);
});

test('a conversation with replies, edits, a deletion and reactions has no serious accessibility violation', async () => {
  const { page } = ann;
  const m = said(page, 'Yes, Friday at 1 pm');
  const problems = await check(page, 'conversation with message features', async (width) => {
    if (width === 'phone') await page.keyboard.press('Escape');
    await m.scrollIntoViewIfNeeded();
    await m.hover();
  });
  // The picker open.
  await m.hover();
  await m.locator('.act-react').click();
  await m.locator('.emoji-picker').waitFor();
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    const v = await axeViolations(page);
    if (v.length) problems.push(`picker, ${scheme}:\n  ${describeViolations(v).replace(/\n/g, '\n  ')}`);
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.keyboard.press('Escape');
  await m.locator('.emoji-picker').waitFor({ state: 'detached' });
  assert.deepEqual(problems, [], problems.join('\n'));
});
