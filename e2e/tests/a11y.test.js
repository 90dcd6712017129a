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
  assert.equal(problems.length, 0, `accessibility violations:\n${problems.join('\n')}`);
});

test('keyboard: the composer has focus on load, a skip link leads to it, and the message list is one tab stop', async () => {
  const { page } = gail;
  await page.setViewportSize(DESKTOP);
  for (let i = 6; i < 70; i++) await nodeApi(nodeA, 'POST', '/channels/lobby/messages', { body: `message number ${i} about the weather` });
  await page.goto('about:blank');
  await page.goto(`${nodeA.webUrl.split('?')[0]}#lobby`);
  await page.locator('#timeline article.msg', { hasText: 'message number 69' }).waitFor({ timeout: 30000 });
  await eventually('the composer has focus', async () => page.evaluate(() => document.activeElement && document.activeElement.id === 'composer-input'));

  // The list holds exactly one tab stop.
  const stops = () => page.evaluate(() => [...document.querySelectorAll('#timeline [tabindex="0"], #timeline button:not([tabindex="-1"]), #timeline a[href]:not([tabindex="-1"])')].length);
  assert.equal(await stops(), 1);
  // Shift+Tab from the composer's region: past the composer hint, onto the
  // newest message, without scrolling to the top or loading older pages.
  const t = page.locator('#timeline');
  const scrolledBefore = await t.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  let focused = '';
  for (let i = 0; i < 4 && !focused.startsWith('msg:'); i++) {
    await page.keyboard.press('Shift+Tab');
    focused = await page.evaluate(() => {
      const a = document.activeElement;
      return a && a.matches('article.msg') ? `msg:${a.textContent}` : (a && (a.id || a.tagName));
    });
  }
  assert.match(focused, /^msg:.*message number 69/, `focus went to ${focused}`);
  assert.ok(await t.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 80), `still at the bottom (was ${scrolledBefore} from it)`);
  // Arrows move inside the list; the tab stop follows.
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('ArrowUp');
  assert.match(await page.evaluate(() => document.activeElement.textContent), /message number 67/);
  assert.equal(await stops(), 1);
  await page.keyboard.press('End');
  assert.match(await page.evaluate(() => document.activeElement.textContent), /message number 69/);
  // Enter shows where it came from; Escape goes back to the message box.
  await page.keyboard.press('Enter');
  await page.locator('#timeline .prov-detail').first().waitFor();
  assert.match(await page.evaluate(() => document.activeElement.textContent), /message number 69/, 'focus stays on the message');
  await page.keyboard.press('Escape');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');

  // The skip link: the first Tab stop of the page, and it leads to the box.
  await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.locator('.skip-link').focus();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to the message box');
  assert.ok(await page.locator('.skip-link').isVisible(), 'visible while focused');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
  const first = await page.evaluate(() => {
    const all = [...document.querySelectorAll('a[href], button, input, textarea, [tabindex]')].filter((el) => el.tabIndex >= 0 && !el.disabled && !el.closest('[inert]'));
    return all[0] && all[0].className;
  });
  assert.equal(first, 'skip-link');
});

test('the host-offline view has no serious or critical accessibility violation', async () => {
  const problems = [];
  // Hal's view while the host is away: the banner.
  await hal.page.goto(nodeB.webUrl);
  await hal.page.locator('.chan[data-channel="lobby"]').click();
  await nodeA.kill();
  await hal.page.locator('#banner-host').waitFor({ timeout: 30000 });
  problems.push(...await check(hal.page, 'host offline'));

  assert.equal(problems.length, 0, `accessibility violations:\n${problems.join('\n')}`);
});
