// WCAG 2.2 AA on the main screens, checked by axe-core in real Chromium:
// sign-in, a channel with messages, the members and search panels, the
// create and invite dialogs, the host-offline banner — at desktop and
// phone width, in the dark and the light theme. No serious or critical
// violation may remain.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startNode, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, DESKTOP, PHONE } from '../lib/browser.js';
import { axeViolations, describeViolations } from '../lib/axe.js';

const PASSWORD = 'correct horse battery';
let server, nodeA, nodeB, browser, gail, hal;
const procs = () => [nodeA, nodeB, server].filter(Boolean);

before(async () => {
  server = await startServer();
  [nodeA, nodeB] = await Promise.all([startNode('gail-node', server.addr), startNode('hal-node', server.addr)]);
  for (const n of [nodeA, nodeB]) {
    await eventually('the node reaches the server', async () => (await nodeApi(n, 'GET', '/node')).body.server_connected);
  }
  browser = await launch();
  gail = await newUser(browser, 'gail');
  hal = await newUser(browser, 'hal');
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

// Runs axe on the page as it is now, at both widths and in both themes
// (`prepare` runs after each change, e.g. to reopen a panel).
async function check(page, screen, prepare = async () => {}) {
  const found = [];
  for (const scheme of ['dark', 'light']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [width, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      await page.setViewportSize(size);
      await prepare(width);
      await page.waitForTimeout(200);
      const v = await axeViolations(page);
      if (v.length) found.push(`${screen}, ${width}, ${scheme}:\n  ${describeViolations(v).replace(/\n/g, '\n  ')}`);
    }
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize(DESKTOP);
  return found;
}

test('the main screens have no serious or critical accessibility violation', async () => {
  const problems = [];
  // Sign-in, as a first visit sees it.
  await gail.page.goto(nodeA.webUrl);
  await gail.page.locator('#tab-register').waitFor();
  problems.push(...await check(gail.page, 'sign-in'));

  // A channel with messages from two people.
  for (const [u, n] of [[gail, nodeA], [hal, nodeB]]) {
    const r = await nodeApi(n, 'POST', '/session/register', { username: u.name, password: PASSWORD });
    assert.ok(r.status < 300, JSON.stringify(r.body));
  }
  assert.ok((await nodeApi(nodeA, 'POST', '/channels', { name: 'lobby', visibility: 'public', allow_visitors: true })).status < 300);
  await eventually('hal sees #lobby', async () => (await nodeApi(nodeB, 'GET', '/channels')).body.channels.some((c) => c.name === 'lobby'));
  assert.ok((await nodeApi(nodeB, 'POST', '/channels/lobby/join')).status < 300);
  for (let i = 0; i < 6; i++) {
    await nodeApi(i % 2 ? nodeB : nodeA, 'POST', '/channels/lobby/messages', { body: `message number ${i} about the weather` });
  }
  await gail.page.goto(nodeA.webUrl);
  await gail.page.locator('.chan[data-channel="lobby"]').click();
  await gail.page.locator('#timeline article.msg', { hasText: 'message number 5' }).waitFor({ timeout: 30000 });
  problems.push(...await check(gail.page, 'channel with the members panel', async (width) => {
    if (width === 'phone') await gail.page.keyboard.press('Escape');
  }));

  // Search.
  problems.push(...await check(gail.page, 'search panel', async () => {
    await gail.page.locator('#search-input').fill('weather');
    await gail.page.locator('#search-input').press('Enter');
    await gail.page.locator('#search-results').waitFor();
  }));

  // The create and invite dialogs.
  await gail.page.setViewportSize(DESKTOP);
  await gail.page.keyboard.press('Escape');
  problems.push(...await check(gail.page, 'create dialog', async (width) => {
    if (width === 'phone') await gail.page.keyboard.press('Escape');
    await gail.page.evaluate(() => { const d = document.querySelector('dialog[open]'); if (d) d.close(); });
    if (width === 'phone') await gail.page.locator('#sidebar-toggle').click();
    await gail.page.locator('#create-channel').click();
    await gail.page.locator('#new-name').waitFor();
  }));
  await gail.page.evaluate(() => { const d = document.querySelector('dialog[open]'); if (d) d.close(); });
  problems.push(...await check(gail.page, 'invite dialog', async (width) => {
    await gail.page.evaluate(() => { const d = document.querySelector('dialog[open]'); if (d) d.close(); });
    if (width === 'phone') await gail.page.locator('#sidebar-toggle').click();
    await gail.page.locator('#invite-people').click();
    await gail.page.locator('#invite-title').waitFor();
  }));
  await gail.page.evaluate(() => { const d = document.querySelector('dialog[open]'); if (d) d.close(); });

  // Hal's view while the host is away: the banner.
  await hal.page.goto(nodeB.webUrl);
  await hal.page.locator('.chan[data-channel="lobby"]').click();
  await nodeA.kill();
  await hal.page.locator('#banner-host').waitFor({ timeout: 30000 });
  problems.push(...await check(hal.page, 'host offline'));

  assert.equal(problems.length, 0, `accessibility violations:\n${problems.join('\n')}`);
});
