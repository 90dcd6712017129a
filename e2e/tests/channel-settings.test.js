// Channel settings, end to end: a real server, two real nodes (alice
// hosts #general and #random, bob joins #general) and two headless
// Chromium profiles. Bob, a member, never sees the settings button.
// Alice opens "Channel settings" (axe finds nothing serious with it open,
// at desktop and phone width, dark and light), is stopped by the topic's
// byte limit before anything is sent, sees the server's own refusal
// shown, renames the channel, sets a topic, makes it members-only, then
// public with visitors (only what changed is sent); her header and
// sidebar follow, and so do bob's, live, without a reload. A long topic
// stays on one line without pushing the header's parts over each other.
// At last she deletes #general after typing its name: both browsers drop
// it and move to another channel, bob's with a notice. Made private,
// #random vanishes from bob's browser (he never joined it), with a notice.
// Screenshots go to ../screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { aliceAndBob, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP, PHONE } from '../lib/browser.js';
import { axeViolations, describeViolations } from '../lib/axe.js';

const PASSWORD = 'correct horse battery';
let server, nodeA, nodeB, browser, alice, bob;
const procs = () => [nodeA, nodeB, server].filter(Boolean);

const chanItem = (page, name) => page.locator(`.chan[data-channel="${name}"]`);
const general = async () => (await nodeApi(nodeA, 'GET', '/channels')).body.channels.find((c) => c.name === 'general');

async function openGeneral(u, node) {
  await u.page.goto(node.webUrl);
  await chanItem(u.page, 'general').click();
  await u.page.locator('#composer-input:not([disabled])').waitFor();
  // Gone after a reload: shows the live updates came without one.
  await u.page.evaluate(() => { window.__sameTab = true; });
}

async function openSettings(page) {
  await page.locator('#channel-settings').click();
  await page.locator('dialog[open] #settings-title').waitFor();
}

// No two visible parts of the channel header overlap, and none sticks
// out of it.
async function headerProblems(page) {
  return page.evaluate(() => {
    const head = document.querySelector('.chat-head').getBoundingClientRect();
    const parts = [...document.querySelectorAll('.chat-head > *, .head-main > *, .chan-id > *')]
      .filter((el) => !el.classList.contains('head-main') && !el.classList.contains('chan-id'))
      .map((el) => ({ el, r: el.getBoundingClientRect() }))
      .filter(({ r }) => r.width > 0 && r.height > 0);
    const name = (el) => el.id || el.className.baseVal || el.className || el.tagName;
    const out = [];
    for (const { el, r } of parts) {
      if (r.left < head.left - 1 || r.right > head.right + 1) out.push(`${name(el)} sticks out of the header`);
    }
    // No chip is cut short by the space it was given.
    for (const chip of document.querySelectorAll('.chips .chip')) {
      const c = chip.getBoundingClientRect(), box = chip.parentElement.getBoundingClientRect();
      if (c.width > 0 && (c.right > box.right + 1 || chip.scrollWidth > chip.clientWidth + 1)) out.push(`${chip.id || chip.className} is cut`);
    }
    for (let i = 0; i < parts.length; i++) {
      for (let j = i + 1; j < parts.length; j++) {
        const a = parts[i].r, b = parts[j].r;
        const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (x > 1 && y > 1) out.push(`${name(parts[i].el)} overlaps ${name(parts[j].el)}`);
      }
    }
    return out;
  });
}

before(async () => {
  ({ server, nodeA, nodeB } = await aliceAndBob(PASSWORD));
  browser = await launch();
  alice = await newUser(browser, 'alice');
  bob = await newUser(browser, 'bob');
  await openGeneral(alice, nodeA);
  await openGeneral(bob, nodeB);
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

test('the node has the settings API this UI uses', async () => {
  const c = await general();
  for (const k of ['title', 'topic', 'my_role', 'visibility', 'allow_visitors']) assert.ok(k in c, `a channel has ${k}: ${JSON.stringify(c)}`);
  assert.equal(c.my_role, 'owner');
  assert.equal(c.title, 'general');
});

test('only the owner sees the settings button', async () => {
  await alice.page.locator('#channel-settings').waitFor();
  assert.equal(await alice.page.locator('#channel-settings').getAttribute('aria-label'), 'Channel settings');
  for (const size of [DESKTOP, PHONE]) {
    await bob.page.setViewportSize(size);
    await bob.page.locator('#chan-title', { hasText: 'general' }).waitFor();
    assert.equal(await bob.page.locator('#channel-settings').count(), 0, 'a member has no settings button');
  }
  await bob.page.setViewportSize(DESKTOP);
  // Nor in a channel he has not joined.
  await chanItem(bob.page, 'random').click();
  await bob.page.locator('#chan-title', { hasText: 'random' }).waitFor();
  assert.equal(await bob.page.locator('#channel-settings').count(), 0);
  await chanItem(bob.page, 'general').click();
  await bob.page.locator('#chan-title', { hasText: 'general' }).waitFor();
});

test('the settings dialog is accessible, closes with Escape and gives focus back', async () => {
  const { page } = alice;
  await openSettings(page);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'set-title', 'the title field has focus');
  assert.equal(await page.locator('#set-title').inputValue(), 'general');
  assert.match(await page.locator('#set-title-count').textContent(), /7\/64/);
  assert.match(await page.locator('#set-topic-count').textContent(), /0\/300 bytes/);
  const found = [];
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [width, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      await page.setViewportSize(size);
      await page.waitForTimeout(200);
      const v = await axeViolations(page);
      if (v.length) found.push(`${width}, ${scheme}:\n${describeViolations(v)}`);
    }
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize(DESKTOP);
  assert.deepEqual(found, [], found.join('\n'));
  await screenshots(page, '30-channel-settings');
  await page.keyboard.press('Escape');
  await eventually('the dialog closed', async () => !(await page.locator('#create-dialog').evaluate((d) => d.open)));
  assert.equal(await page.evaluate(() => document.activeElement.id), 'channel-settings', 'focus is back on the button');
});

test('limits are checked before sending, and the server\'s refusal is shown', async () => {
  const { page } = alice;
  let patches = 0;
  const count = (r) => { if (r.method() === 'PATCH') patches++; };
  page.on('request', count);
  await openSettings(page);
  // 100 × "é" is 200 bytes; with 101 more letters the topic is 301 bytes.
  await page.locator('#set-topic').fill(`${'é'.repeat(100)}${'a'.repeat(101)}`);
  assert.match(await page.locator('#set-topic-count').textContent(), /301\/300 bytes/);
  assert.match(await page.locator('#set-topic-count').getAttribute('class'), /over/);
  await page.locator('#settings-save').click();
  assert.match(await page.locator('#settings-error').textContent(), /at most 300 bytes; this one has 301/);
  // A pasted line break becomes a space (a topic is one line).
  await page.locator('#set-topic').fill('first line\nsecond line');
  assert.equal(await page.locator('#set-topic').inputValue(), 'first line second line');
  // A title over 64 characters, refused here too.
  await page.locator('#set-topic').fill('');
  await page.locator('#set-title').fill('x'.repeat(65));
  await page.locator('#settings-save').click();
  assert.match(await page.locator('#settings-error').textContent(), /at most 64 characters/);
  assert.equal(patches, 0, 'nothing was sent');
  // U+034F passes the page's check; the server refuses it and says why.
  await page.locator('#set-title').fill('odd\u034ftitle');
  await page.locator('#settings-save').click();
  await eventually('the server\'s refusal shown', async () => /Not saved: .*U\+034F/.test(await page.locator('#settings-error').textContent()));
  assert.equal(patches, 1);
  assert.equal((await general()).title, 'general', 'nothing changed');
  page.off('request', count);
  await page.locator('#settings-cancel').click();
  await eventually('the dialog closed', async () => !(await page.locator('#create-dialog').evaluate((d) => d.open)));
});

test('the owner renames, sets a topic, changes visibility and visitors; both browsers follow live', async () => {
  const { page } = alice;
  const topic = 'Plans, releases and the weekly demo — bring questions';
  await openSettings(page);
  await page.locator('#set-title').fill('Project Talk');
  await page.locator('#set-topic').fill(topic);
  await page.locator('input[name=visibility][value=members_only]').check();
  assert.equal(await page.locator('#set-visitors').isDisabled(), true, 'visitors only read public channels');
  const sent = page.waitForRequest((r) => r.method() === 'PATCH');
  await page.locator('#settings-save').click();
  assert.deepEqual((await sent).postDataJSON(), { title: 'Project Talk', topic, visibility: 'members_only' });
  await eventually('the dialog closed', async () => !(await page.locator('#create-dialog').evaluate((d) => d.open)));

  // Alice's header and sidebar.
  await page.locator('#chan-title', { hasText: 'Project Talk' }).waitFor();
  assert.equal(await page.locator('#chan-topic').textContent(), topic);
  assert.equal(await page.locator('#chan-topic').getAttribute('title'), topic);
  assert.equal(await chanItem(page, 'general').locator('.chan-name').textContent(), 'Project Talk');
  await eventually('alice\'s header says members only', async () => /Members only/.test(await page.locator('.chips').textContent()));
  const c = await general();
  assert.deepEqual([c.name, c.title, c.topic, c.visibility], ['general', 'Project Talk', topic, 'members_only']);

  // Bob's, live.
  await bob.page.locator('#chan-title', { hasText: 'Project Talk' }).waitFor();
  await eventually('bob sees the topic', async () => (await bob.page.locator('#chan-topic').textContent()) === topic);
  await eventually('bob\'s sidebar', async () => (await chanItem(bob.page, 'general').locator('.chan-name').textContent()) === 'Project Talk');
  await eventually('bob\'s header says members only', async () => /Members only/.test(await bob.page.locator('.chips').textContent()));
  assert.equal(await bob.page.evaluate(() => window.__sameTab), true, 'bob\'s page was not reloaded');
  assert.equal(await bob.page.locator('#channel-settings').count(), 0);
  await screenshots(bob.page, '31-channel-renamed');

  // Public again, with visitors — at phone width; only those two are sent.
  await page.setViewportSize(PHONE);
  await openSettings(page);
  assert.equal(await page.locator('#set-title').inputValue(), 'Project Talk');
  await page.locator('input[name=visibility][value=public]').check();
  await page.locator('#set-visitors').check();
  const sent2 = page.waitForRequest((r) => r.method() === 'PATCH');
  await page.locator('#settings-save').click();
  assert.deepEqual((await sent2).postDataJSON(), { visibility: 'public', allow_visitors: true });
  await eventually('saved', async () => {
    const g = await general();
    return g.visibility === 'public' && g.allow_visitors;
  });
  await eventually('bob sees visitors welcome', async () => /visitors welcome/.test(await bob.page.locator('.chips').textContent()));
  assert.equal(await bob.page.evaluate(() => window.__sameTab), true);
  await page.setViewportSize(DESKTOP);
});

test('a long topic stays on one line and the header parts do not overlap', async () => {
  const long = `${'A topic that goes on and on about what this channel is for, '.repeat(4)}end`;
  const r = await nodeApi(nodeA, 'PATCH', '/channels/general', { topic: long });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  for (const u of [alice, bob]) {
    await eventually(`${u.name} sees the long topic`, async () => (await u.page.locator('#chan-topic').textContent()) === long);
    for (const size of [DESKTOP, PHONE]) {
      await u.page.setViewportSize(size);
      await u.page.waitForTimeout(300);
      if (size === DESKTOP) {
        const open = await u.page.locator('.layout').evaluate((l) => l.classList.contains('panel-open'));
        if (!open) await u.page.locator('#members-toggle').click();
      }
      assert.deepEqual(await headerProblems(u.page), [], `${u.name} at ${size.width}px`);
      const topic = u.page.locator('#chan-topic');
      const [sw, cw, h] = await topic.evaluate((el) => [el.scrollWidth, el.clientWidth, el.getBoundingClientRect().height]);
      assert.ok(sw > cw, 'the topic is cut short (ellipsis)');
      assert.ok(h < 20, `the topic is one line (${h}px high)`);
    }
    await u.page.setViewportSize(DESKTOP);
  }
  await screenshots(alice.page, '32-channel-long-topic');
});

test('the owner deletes the channel after typing its name; the member\'s browser drops it', async () => {
  const { page } = alice;
  await openSettings(page);
  await page.locator('#danger-zone summary').click();
  const del = page.locator('#delete-channel');
  assert.equal(await del.isDisabled(), true);
  await page.locator('#delete-confirm').fill('Project Talk');
  assert.equal(await del.isDisabled(), true, 'the title is not the name');
  await page.locator('#delete-confirm').fill('genera');
  assert.equal(await del.isDisabled(), true);
  await page.locator('#delete-confirm').fill('general');
  assert.equal(await del.isDisabled(), false);
  const v = await axeViolations(page);
  assert.deepEqual(v, [], describeViolations(v));
  const toButton = async () => { await page.locator('#delete-channel').scrollIntoViewIfNeeded(); };
  await screenshots(page, '33-channel-delete', { desktop: toButton, phone: toButton });
  await del.click();

  // Alice: gone, and she is in #random.
  await page.locator('#chan-title', { hasText: 'random' }).waitFor();
  await eventually('gone from alice\'s sidebar', async () => (await chanItem(page, 'general').count()) === 0);
  assert.match(await page.locator('#notice').textContent(), /“Project Talk” \(#general\) was deleted/);
  assert.equal(await page.locator('dialog[open]').count(), 0);
  assert.equal((await general()), undefined, 'the node no longer lists it');

  // Bob: dropped live, moved elsewhere, told why.
  await eventually('gone from bob\'s sidebar', async () => (await chanItem(bob.page, 'general').count()) === 0);
  await bob.page.locator('#chan-title', { hasText: 'random' }).waitFor();
  assert.match(await bob.page.locator('#notice').textContent(), /“Project Talk” \(#general\) was deleted by its owner/);
  assert.equal(await bob.page.evaluate(() => location.hash), '#random');
  assert.equal(await bob.page.evaluate(() => window.__sameTab), true, 'bob\'s page was not reloaded');
  await screenshots(bob.page, '34-channel-deleted');
});

test('a channel made private disappears from a non-member\'s browser', async () => {
  // Alice is in #random now; bob previews it without having joined.
  const { page } = alice;
  await page.locator('#chan-title', { hasText: 'random' }).waitFor();
  await openSettings(page);
  await page.locator('input[name=visibility][value=private]').check();
  const sent = page.waitForRequest((r) => r.method() === 'PATCH');
  await page.locator('#settings-save').click();
  assert.deepEqual((await sent).postDataJSON(), { visibility: 'private' });
  await eventually('alice\'s header says private', async () => /Private/.test(await page.locator('.chips').textContent()));
  await eventually('gone from bob\'s sidebar', async () => (await chanItem(bob.page, 'random').count()) === 0);
  await eventually('bob is told', async () => /#random is no longer visible to you/.test(await bob.page.locator('#notice').textContent()));
  assert.equal(await bob.page.locator('#chan-title').textContent(), 'segchat', 'nothing left to open');
  assert.equal(await bob.page.evaluate(() => window.__sameTab), true, 'bob\'s page was not reloaded');
});
