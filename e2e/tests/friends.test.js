// Friends, end to end: a real server, two real nodes (alice and bob, who
// share #general) and a third (cara, who shares no channel with anyone),
// each in its own headless Chromium profile. Alice asks cara by name from
// the "Add friend" tab; cara is told at once, with the request waiting
// behind a badge on "Friends", and accepts it from "Pending". Both then
// see each other online without a channel in common, and cara's status
// changes reach alice live. Bob asks alice; she blocks him instead: his
// browser drops the request and shows her offline in #general's members.
// axe finds nothing serious in the panel, at desktop and phone width,
// dark and light. Screenshots go to ../screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { aliceAndBob, startNode, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP, PHONE } from '../lib/browser.js';
import { axeViolations, describeViolations } from '../lib/axe.js';

const PASSWORD = 'correct horse battery';
let server, nodeA, nodeB, nodeC, browser, alice, bob, cara;
const procs = () => [nodeA, nodeB, nodeC, server].filter(Boolean);

const row = (page, name) => page.locator(`#friend-list li[data-username="${name}"]`);

async function openFriends(page) {
  if (await page.locator('#friends-body').count()) return;
  // On a phone the button is in the channel list, which opens first.
  if (await page.locator('#sidebar-toggle').isVisible()) await page.locator('#sidebar-toggle').click();
  await page.locator('#friends-open').click();
  await page.locator('#friends-body').waitFor();
}

// Opens the panel if it is closed (a change of width may close it) and
// shows tab `name`.
async function tab(page, name) {
  await openFriends(page);
  await page.locator(`#friends-tab-${name}`).click();
  await page.locator(`#friends-tab-${name}[aria-selected="true"]`).waitFor();
}

before(async () => {
  ({ server, nodeA, nodeB } = await aliceAndBob(PASSWORD));
  nodeC = await startNode('cara-node', server.addr);
  await eventually('cara\'s node reaches the server', async () => (await nodeApi(nodeC, 'GET', '/node')).body.server_connected);
  const r = await nodeApi(nodeC, 'POST', '/session/register', { username: 'cara', password: PASSWORD });
  assert.ok(r.status < 300, JSON.stringify(r.body));
  browser = await launch();
  alice = await newUser(browser, 'alice');
  bob = await newUser(browser, 'bob');
  cara = await newUser(browser, 'cara');
  for (const [u, node] of [[alice, nodeA], [bob, nodeB], [cara, nodeC]]) {
    await u.page.goto(node.webUrl);
    await u.page.locator('#friends-open').waitFor();
  }
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

test('a request sent by name arrives live and is accepted from Pending', async () => {
  await openFriends(alice.page);
  await tab(alice.page, 'add');
  await alice.page.locator('#friend-name').fill('cara');
  await alice.page.locator('#friend-send').click();
  await alice.page.locator('.friend-result[role=status]', { hasText: 'Friend request sent to' }).waitFor();
  assert.equal(await alice.page.locator('#friend-name').inputValue(), '', 'the field is cleared');

  // Cara: a notice and a badge, without a reload.
  await cara.page.evaluate(() => { window.__sameTab = true; });
  await cara.page.locator('#notice', { hasText: 'wants to be your friend' }).waitFor();
  await cara.page.locator('#friends-open .badge', { hasText: '1' }).waitFor();
  await cara.page.locator('#notice button', { hasText: 'Show' }).click();
  await cara.page.locator('#friends-tab-pending[aria-selected="true"]').waitFor();
  await row(cara.page, 'alice').locator('[data-action=accept]').click();
  await cara.page.locator('.friend-result', { hasText: 'friends now' }).waitFor();
  assert.equal(await cara.page.evaluate(() => window.__sameTab), true, 'no reload');
  assert.equal(await cara.page.locator('#friends-open .badge').count(), 0, 'nothing waiting any more');

  // Alice is told, and sees cara online though they share no channel.
  await alice.page.locator('#notice', { hasText: 'accepted your friend request' }).waitFor();
  await tab(alice.page, 'online');
  await row(alice.page, 'cara').waitFor();
  assert.equal(await row(alice.page, 'cara').getAttribute('class'), 'member friend online');
  await tab(cara.page, 'online');
  await row(cara.page, 'alice').waitFor();
});

test('a friend\'s status changes reach the panel live', async () => {
  const idle = await nodeApi(nodeC, 'PUT', '/status', { status: 'idle' });
  assert.ok(idle.status < 300, JSON.stringify(idle.body));
  await alice.page.locator('#friend-list li[data-username="cara"].idle').waitFor();
  const invisible = await nodeApi(nodeC, 'PUT', '/status', { status: 'invisible' });
  assert.ok(invisible.status < 300, JSON.stringify(invisible.body));
  await eventually('cara leaves the Online tab', async () => (await row(alice.page, 'cara').count()) === 0);
  await tab(alice.page, 'all');
  await alice.page.locator('#friend-list li[data-username="cara"].offline').waitFor();
  await nodeApi(nodeC, 'PUT', '/status', { status: 'online' });
  await alice.page.locator('#friend-list li[data-username="cara"].online').waitFor();
});

test('the friends panel is accessible at desktop and phone width', async () => {
  const { page } = alice;
  await tab(page, 'all');
  const found = [];
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [width, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      await page.setViewportSize(size);
      // The layout follows the width (a phone closes the panel) first.
      await page.waitForTimeout(200);
      await openFriends(page);
      const v = await axeViolations(page);
      if (v.length) found.push(`${width}, ${scheme}:\n${describeViolations(v)}`);
    }
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize(DESKTOP);
  assert.deepEqual(found, [], found.join('\n'));
  await page.waitForTimeout(200);
  await openFriends(page);
  // Arrow keys move between the tabs.
  await page.evaluate(() => document.getElementById('friends-tab-all').focus());
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'friends-tab-pending');
  await tab(page, 'all');
  await screenshots(page, '40-friends', { phone: () => page.waitForTimeout(200).then(() => openFriends(page)) });
});

test('a blocked user\'s request is gone and their blocker looks offline to them', async () => {
  await bob.page.locator('.chan[data-channel="general"]').click();
  await bob.page.locator('#member-list li[data-username="alice"].online').waitFor();
  await openFriends(bob.page);
  await tab(bob.page, 'add');
  await bob.page.locator('#friend-name').fill('alice');
  await bob.page.locator('#friend-send').click();
  await bob.page.locator('.friend-result[role=status]').waitFor();

  await tab(alice.page, 'pending');
  await row(alice.page, 'bob').waitFor();
  assert.equal(await row(alice.page, 'bob').getAttribute('data-kind'), 'incoming');
  const blocked = await nodeApi(nodeA, 'PUT', '/blocks/bob');
  assert.equal(blocked.status, 200, JSON.stringify(blocked.body));
  await eventually('the request leaves alice\'s Pending', async () => (await row(alice.page, 'bob').count()) === 0);
  await tab(alice.page, 'blocked');
  await row(alice.page, 'bob').locator('[data-action=unblock]').waitFor();

  // Bob: his request is gone, alice is offline in #general.
  await tab(bob.page, 'pending');
  await eventually('bob\'s request is gone', async () => (await row(bob.page, 'alice').count()) === 0);
  await bob.page.locator('#members-toggle').click();
  await bob.page.locator('#member-list li[data-username="alice"].offline').waitFor();

  // Asking again is refused, worded as for someone who does not exist.
  await openFriends(bob.page);
  await tab(bob.page, 'add');
  await bob.page.locator('#friend-name').fill('alice');
  await bob.page.locator('#friend-send').click();
  const refusal = await bob.page.locator('.friend-result[role=alert]').textContent();
  assert.match(refusal, /no user named/);
  assert.doesNotMatch(refusal, /block/);
  await screenshots(bob.page, '41-friend-refused', { phone: () => bob.page.waitForTimeout(200).then(() => openFriends(bob.page)) });
});
