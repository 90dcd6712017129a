// Search in the web UI end to end: a real server and node, headless
// Chromium. 80 messages with "lorem" are posted through the API; searching
// "lore" finds them all: "80 results", newest first, 50 listed, and
// "Load more" lists 51–80. "In #general only" narrows to one channel, and
// the keyboard reaches all of it. Screenshots go to ../screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startNode, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP } from '../lib/browser.js';

const PASSWORD = 'correct horse battery';
const N = 80;
// Every eighth message goes to #random, the rest to #general.
const channelOf = (i) => (i % 8 === 0 ? 'random' : 'general');
let server, node, browser, alice;

before(async () => {
  server = await startServer();
  node = await startNode('search-node', server.addr);
  browser = await launch();
  alice = await newUser(browser, 'alice');
});

after(async () => {
  if (browser) await browser.close();
  for (const p of [node, server].filter(Boolean)) await p.stop();
  for (const p of [node, server].filter(Boolean)) removeDir(p.dir);
});

const results = (page) => page.locator('#search-results .result');
const bodies = (page) => results(page).evaluateAll((els) => els.map((e) => e.querySelector('.result-body').textContent));
const newestFirst = (from, to) => Array.from({ length: to - from }, (_, k) => `lorem ipsum ${N - 1 - from - k}`);

async function search(page, text) {
  // Ctrl+K, as from the keyboard (at phone width the box only opens so).
  await page.keyboard.press('Control+k');
  await page.locator('#search-input').fill(text);
  await page.locator('#search-input').press('Enter');
  await page.locator('#search-count', { hasText: 'results' }).waitFor();
}

test('alice signs in, and 80 messages are posted through the API', async () => {
  const { page } = alice;
  await page.goto(node.webUrl);
  await page.locator('#tab-register').click();
  await page.locator('#username').fill('alice');
  await page.locator('#password').fill(PASSWORD);
  await page.locator('.auth-form button[type=submit]').click();
  await page.locator('#status-button').waitFor();
  for (const name of ['general', 'random']) {
    const r = await nodeApi(node, 'POST', '/channels', { name, visibility: 'public', allow_visitors: false });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  for (let i = 0; i < N; i++) {
    const r = await nodeApi(node, 'POST', `/channels/${channelOf(i)}/messages`, { body: `lorem ipsum ${i}` });
    assert.equal(r.status, 202, JSON.stringify(r.body));
  }
  await nodeApi(node, 'POST', '/channels/general/messages', { body: 'something else entirely' });
  await page.locator('.chan[data-channel="general"]').click();
  await page.locator('#chan-title', { hasText: 'general' }).waitFor();
});

test('"lore" finds all 80: the count, newest first, 50 listed, then Load more', async () => {
  const { page } = alice;
  await search(page, 'lore');
  const count = page.locator('#search-count');
  assert.match(await count.textContent(), /^80 results for “lore” · showing 50$/);
  await eventually('the count announced', async () => /80 results for “lore”/.test(await page.locator('#live').textContent()));
  assert.deepEqual(await bodies(page), newestFirst(0, 50), 'the newest 50, newest first');
  const more = page.locator('#search-more');
  assert.equal(await more.textContent(), 'Load more (30 left)');

  await more.click();
  await eventually('51–80 listed', async () => (await results(page).count()) === N);
  assert.deepEqual(await bodies(page), newestFirst(0, N), 'all 80, each once, newest first');
  assert.equal(await more.count(), 0, 'nothing more to load');
  assert.equal(await count.textContent(), '80 results for “lore”');
  // The keyboard carries on at the first of the new results.
  const focused = await page.evaluate(() => document.activeElement.closest('.result')?.querySelector('.result-body').textContent);
  assert.equal(focused, 'lorem ipsum 29');

  try {
    await screenshots(page, '06b-search-more', {
      phone: async () => {
        // At phone width the side panel closes (see chat.test.js): open
        // it again with the same search and its second page.
        await page.locator('#search-results').waitFor({ state: 'hidden' });
        await search(page, 'lore');
        await page.locator('#search-more').click();
        await eventually('51–80 listed', async () => (await results(page).count()) === N);
      },
    });
  } finally {
    await page.keyboard.press('Escape');
    await page.setViewportSize(DESKTOP);
  }
});

test('"In #general only" narrows the search, all by keyboard', async () => {
  const { page } = alice;
  await search(page, 'lore');
  const here = page.locator('#search-here');
  assert.equal(await page.locator('label[for="search-here"]').textContent(), 'In #general only');
  await here.focus();
  await page.keyboard.press('Space');
  const count = page.locator('#search-count');
  await count.filter({ hasText: '70 results for “lore” in #general' }).waitFor();
  assert.equal(await here.isChecked(), true);
  assert.deepEqual(await bodies(page), newestFirst(0, 60).filter((b) => channelOf(Number(b.split(' ')[2])) === 'general').slice(0, 50));
  const chans = await results(page).evaluateAll((els) => els.map((e) => e.dataset.channel));
  assert.ok(chans.every((c) => c === 'general'), chans.join());
  // Load more from the keyboard.
  await page.locator('#search-more').focus();
  await page.keyboard.press('Enter');
  await eventually('all 70 listed', async () => (await results(page).count()) === 70);
  assert.equal(await count.textContent(), '70 results for “lore” in #general');
  // And back to every channel.
  await here.focus();
  await page.keyboard.press('Space');
  await count.filter({ hasText: /^80 results for “lore” · showing 50$/ }).waitFor();
  // A result opens its message in the timeline.
  await results(page).first().click();
  await page.locator('#timeline article.msg', { hasText: 'lorem ipsum 79' }).waitFor();
});

test('words the search engine would read as syntax are searched as text', async () => {
  const { page } = alice;
  for (const text of ['"lorem', 'lorem*', 'NEAR(lorem', 'ipsum OR']) {
    await page.locator('#search-input').fill(text);
    await page.locator('#search-input').press('Enter');
    await page.locator('#search-count').filter({ hasText: `“${text}”` }).waitFor();
    assert.equal(await page.locator('#panel [role=alert]').count(), 0, `${text}: no error`);
  }
});
