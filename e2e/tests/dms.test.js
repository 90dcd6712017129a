// Direct messages, end to end: a real server and two real nodes (ann and
// bob, who share no channel), each in its own headless Chromium profile.
// Ann writes to bob by name ("+" in Direct messages); bob's sidebar shows
// the conversation with an unread badge at once, he opens it and reads
// the text (markdown drawn, markup never run), and ann sees her message
// move to "Read"; his reply reaches her live. At phone width bob opens
// it from the channel list and answers through "Message" in the friends
// panel. A message to a name nobody has says so and keeps the text. A
// long conversation: the badge counts 50, the newest page shows first,
// older ones load on scrolling up, and the list is one tab stop. axe
// finds nothing serious, at desktop and phone width, dark and light.
// Screenshots go to ../screenshots/ (42 to 45).

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
