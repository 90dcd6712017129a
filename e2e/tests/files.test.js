// Files shared in a channel, end to end: a real server, four real nodes
// (alice hosts #general, bob and carol have joined it, carol's node takes
// files up to 1 MiB; a visitor's node) and headless Chromium profiles. An image alice pastes shows as a preview in bob's
// browser, and opens whole in a new tab; a file bob drops on the
// conversation reaches alice as a card; a 30 MB upload shows its progress
// bar (percent, speed, time left) before its message appears, and bob
// downloads it with progress and saves exactly those bytes; an upload
// carol's node refuses says the node's reason and gives the caption back;
// the attach button is reached by keyboard; a download dave's slow node
// is fetching can be cancelled and goes on from what it held; a visitor
// has no attach button; axe finds nothing serious on the way. An image
// too large to come by itself shows at once by the thumbnail its message
// carries, and comes whole on "Show full image". An image alice pastes in
// a direct message to bob shows in his browser, and his node serves the
// bytes she pasted though they travel encrypted.
// Screenshots go to ../screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { aliceAndBob, startNode, nodeApi, eventually, removeDir, tempDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP, PHONE } from '../lib/browser.js';
import { axeViolations, describeViolations } from '../lib/axe.js';

const PASSWORD = 'correct horse battery';
const BIG = 30 * 1024 * 1024;
let server, nodeA, nodeB, nodeC, nodeD, nodeV, browser, alice, bob, carol, dave, sam, scratch;
const procs = () => [nodeA, nodeB, nodeC, nodeD, nodeV, server].filter(Boolean);

const chanItem = (page, name) => page.locator(`.chan[data-channel="${name}"]`);
// A message whose caption holds `text`.
const msg = (page, text) => page.locator('#timeline article.msg').filter({ has: page.locator('.body .md-p', { hasText: text }) });
// The message that shares the file named `name`.
const fileMsg = (page, name) => page.locator('#timeline article.msg').filter({ has: page.locator('.file .file-name', { hasText: name }) });
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
// Whether the timeline shows its newest message (scrolled to the end).
const atBottom = (page) => page.locator('#timeline').evaluate((t) => t.scrollHeight - t.scrollTop - t.clientHeight < 2);

async function openChannel(u, node, name) {
  await u.page.goto(node.webUrl);
  await chanItem(u.page, name).click();
  await u.page.locator('#timeline[aria-label="Messages in ' + name + '"]').waitFor();
}

// Shares `bytes` as file `name` through the node's API (as a bot would).
async function share(node, channel, name, type, bytes, caption = '') {
  const q = new URLSearchParams({ name, type, caption });
  const resp = await fetch(`${node.apiUrl}/api/v1/channels/${channel}/files?${q}`, {
    method: 'POST', headers: { Authorization: `Bearer ${node.token}` }, body: bytes,
  });
  const body = await resp.json();
  assert.equal(resp.status, 202, JSON.stringify(body));
  return body.message;
}

// A PNG drawn in the page: `w`×`h`, a gradient and a label.
async function pngIn(page, w, h, label) {
  return page.evaluateHandle(async ([w, h, label]) => {
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, '#5865f2');
    grad.addColorStop(1, '#eb459e');
    g.fillStyle = grad;
    g.fillRect(0, 0, w, h);
    g.fillStyle = '#fff';
    g.font = 'bold 28px sans-serif';
    g.fillText(label, 20, h / 2);
    return new Promise((r) => c.toBlob(r, 'image/png'));
  }, [w, h, label]);
}

// Collects every progress text shown under `selector` from now on
// (window.__seen[key]), so a test can tell what was on screen between
// two of its steps however briefly.
async function watchTexts(page, key, selector) {
  await page.evaluate(([key, selector]) => {
    window.__seen = window.__seen || {};
    const seen = new Set();
    window.__seen[key] = seen;
    const look = () => { for (const el of document.querySelectorAll(selector)) if (el.textContent) seen.add(el.textContent); };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true });
    look();
  }, [key, selector]);
}
const seenTexts = (page, key) => page.evaluate((key) => [...window.__seen[key]], key);

// Runs axe at both widths and in both themes.
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

before(async () => {
  ({ server, nodeA, nodeB } = await aliceAndBob(PASSWORD));
  [nodeC, nodeD, nodeV] = await Promise.all([
    startNode('carol-node', server.addr, undefined, { maxFileMib: 1 }),
    // dave's node fetches 1 MiB a second, so a download is still on its
    // way when he cancels it.
    startNode('dave-node', server.addr, undefined, { downloadLimitMib: 1 }),
    startNode('visitor-node', server.addr),
  ]);
  for (const [n, name] of [[nodeD, 'dave']]) {
    await eventually(`${name}'s node reaches the server`, async () => (await nodeApi(n, 'GET', '/node')).body.server_connected);
    const r = await nodeApi(n, 'POST', '/session/register', { username: name, password: PASSWORD });
    assert.ok(r.status < 300, JSON.stringify(r.body));
    const j = await nodeApi(n, 'POST', '/channels/general/join');
    assert.ok(j.status < 300, JSON.stringify(j.body));
  }
  await eventually("carol's node reaches the server", async () => (await nodeApi(nodeC, 'GET', '/node')).body.server_connected);
  const reg = await nodeApi(nodeC, 'POST', '/session/register', { username: 'carol', password: PASSWORD });
  assert.ok(reg.status < 300, JSON.stringify(reg.body));
  const joined = await nodeApi(nodeC, 'POST', '/channels/general/join');
  assert.ok(joined.status < 300, JSON.stringify(joined.body));
  const lobby = await nodeApi(nodeA, 'POST', '/channels', { name: 'lobby', visibility: 'public', allow_visitors: true });
  assert.ok(lobby.status < 300, JSON.stringify(lobby.body));
  scratch = tempDir('files');
  browser = await launch();
  // Expected in the console: a node answers 404 for a file it has none
  // of yet (a card's first look), and the refused upload's 413.
  const quiet = /status of (404|413)/;
  alice = await newUser(browser, 'alice', { quiet });
  bob = await newUser(browser, 'bob', { quiet });
  carol = await newUser(browser, 'carol', { quiet });
  dave = await newUser(browser, 'dave', { quiet });
  sam = await newUser(browser, 'sam', { quiet });
  // File pickers are always caught (playwright turns catching them on and
  // off with its listeners; a picker opened in between is never seen).
  for (const u of [alice, bob, carol]) u.page.on('filechooser', () => {});
  await openChannel(alice, nodeA, 'general');
  await openChannel(bob, nodeB, 'general');
  await eventually('bob is linked to the host', async () => (await bob.page.locator('#link-state').getAttribute('data-via')) === 'host', 30000);
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
  if (scratch) removeDir(scratch);
});

test('an image pasted in one browser shows as a preview in another, and opens whole in a new tab', async () => {
  const { page } = alice;
  const box = page.locator('#composer-input');
  await box.fill('look at this sunset');
  const png = await pngIn(page, 480, 300, 'sunset.png');
  await page.evaluate((blob) => {
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'sunset.png', { type: 'image/png' }));
    const ta = document.getElementById('composer-input');
    ta.focus();
    ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, png);
  // The box's text went with the image as its caption.
  const mine = msg(page, 'look at this sunset');
  await mine.locator('img.file-img').waitFor();
  assert.equal(await box.inputValue(), '', 'the caption left the box');
  assert.equal(await mine.locator('img.file-img').getAttribute('alt'), 'sunset.png');
  await eventually('alice sees her image', () => mine.locator('img.file-img').evaluate((i) => i.complete && i.naturalWidth === 480));
  // A message sharing a file cannot be edited: no Edit action on it.
  assert.equal(await mine.locator('.act-edit').count(), 0);
  assert.equal(await page.locator('#upload-slot li').count(), 0, 'nothing left uploading');

  // Bob's node fetches it from alice's by itself; his browser shows it.
  const theirs = msg(bob.page, 'look at this sunset');
  const img = theirs.locator('img.file-img');
  await img.waitFor({ timeout: 60000 });
  await eventually("bob's preview has loaded", () => img.evaluate((i) => i.complete && i.naturalWidth === 480 && i.naturalHeight === 300), 60000);
  assert.equal(await img.getAttribute('alt'), 'sunset.png');
  // The image took its room and the conversation stayed at its newest.
  await eventually("bob's timeline at its newest message", () => atBottom(bob.page));
  const box2 = await img.boundingBox();
  assert.ok(box2.width <= 440 && box2.height <= 320, `a preview is kept small (${box2.width}×${box2.height})`);
  const hash = await theirs.locator('.file').getAttribute('data-hash');
  assert.match(hash, /^[0-9a-f]{64}$/);
  const link = theirs.locator('a.file-open');
  assert.equal(await link.getAttribute('href'), `/api/v1/files/${hash}/content`);
  assert.equal(await link.getAttribute('target'), '_blank');
  await screenshots(bob.page, '60-file-image');
  await bob.page.setViewportSize(DESKTOP);

  // A click opens the whole image in a new tab, from bob's own node (not
  // from the browser's cache, where the preview put it).
  const cdp = await bob.context.newCDPSession(bob.page);
  await cdp.send('Network.clearBrowserCache');
  await cdp.detach();
  const [tab] = await Promise.all([bob.context.waitForEvent('page'), link.click()]);
  await tab.waitForLoadState();
  const shown = await eventually('the image in its tab', () => tab.evaluate(() => {
    const i = document.querySelector('img');
    return i && i.complete && i.naturalWidth;
  }), 10000).catch(async (e) => {
    throw new Error(`${e.message}; the tab shows: ${(await tab.evaluate(() => document.body.innerText)).slice(0, 300)}`);
  });
  assert.equal(shown, 480);
  await tab.close();
});

test('a file dropped on the conversation is shared; the other side sees its card', async () => {
  const { page } = bob;
  const text = 'meeting notes\n'.repeat(100);
  const dt = await page.evaluateHandle((text) => {
    const d = new DataTransfer();
    d.items.add(new File([text], 'notes.txt', { type: 'text/plain' }));
    return d;
  }, text);
  const timeline = page.locator('#timeline');
  await timeline.dispatchEvent('dragenter', { dataTransfer: dt });
  await timeline.dispatchEvent('dragover', { dataTransfer: dt });
  // While files are over it, the conversation says where they would go.
  await page.locator('#chat.dropping .drop-overlay', { hasText: 'Drop to share in #general' }).waitFor();
  await screenshots(page, '61-file-drop');
  await page.setViewportSize(DESKTOP);
  await timeline.dispatchEvent('drop', { dataTransfer: dt });
  await page.locator('#chat.dropping').waitFor({ state: 'detached' });
  await fileMsg(page, 'notes.txt').waitFor();

  // Alice's node hosts the channel: the card is hers to save at once, or
  // as soon as her node has kept its copy.
  const card = fileMsg(alice.page, 'notes.txt').locator('.file-card');
  await card.waitFor();
  assert.equal(await card.locator('.file-size').textContent(), '1.4 KB');
  await card.locator('.file-download, .file-save').first().waitFor();
  assert.match(await card.textContent(), /^notes\.txt1\.4 KB(Download|Save)$/);
});

test('a 30 MB upload shows its progress before the message; bob downloads it with progress and saves it', async () => {
  const bytes = randomBytes(BIG);
  const file = path.join(scratch, 'big-archive.bin');
  writeFileSync(file, bytes);
  const { page } = alice;
  // At most 12 MB/s from the browser, so the upload takes over two
  // seconds on any machine and its progress can be seen.
  const cdp = await alice.context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 12 * 1024 * 1024 });
  const mine = fileMsg(page, 'big-archive.bin');
  try {
    await watchTexts(page, 'upload', '.upload .xfer-text');
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.locator('#attach-button').click()]);
    assert.equal(chooser.isMultiple(), true);
    await chooser.setFiles(file);

    // The upload, with its bar and a percent, then its message.
    const up = page.locator('#upload-slot .upload', { hasText: 'big-archive.bin' });
    await up.waitFor();
    assert.equal(await up.locator('progress.xfer-bar').getAttribute('aria-label'), 'Uploading big-archive.bin');
    await up.locator('.xfer-text', { hasText: /\d+% · / }).waitFor();
    await screenshots(page, '62-file-upload-progress');
    await page.setViewportSize(DESKTOP);
    await mine.waitFor({ timeout: 60000 });
    await up.waitFor({ state: 'detached' });
  } finally {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
  }
  const seen = await seenTexts(page, 'upload');
  const middle = seen.map((t) => Number((t.match(/^(\d+)%/) || [])[1])).filter((p) => p > 0 && p < 100);
  assert.ok(middle.length > 0, `a percent between 0 and 100 was shown: ${JSON.stringify(seen)}`);
  assert.ok(seen.some((t) => /^\d+% · .* of 30 MB · .*\/s · .* left$/.test(t)), `the speed and time left were shown: ${JSON.stringify(seen)}`);
  assert.equal(await mine.locator('.file-size').textContent(), '30 MB');

  // Bob's node does not fetch a file that is not an image by itself: he asks.
  const theirs = fileMsg(bob.page, 'big-archive.bin');
  await theirs.waitFor({ timeout: 30000 });
  assert.equal(await theirs.locator('.file-name').textContent(), 'big-archive.bin');
  assert.equal(await theirs.locator('.file-size').textContent(), '30 MB');
  const download = theirs.locator('button.file-download');
  assert.equal(await download.getAttribute('aria-label'), 'Download big-archive.bin (30 MB)');
  await watchTexts(bob.page, 'download', '.file-card .xfer-text');
  // By keyboard: Enter on Download, and once the file is here, focus is
  // on its Save link.
  await download.focus();
  await bob.page.keyboard.press('Enter');
  await theirs.locator('progress.xfer-bar[aria-label="Downloading big-archive.bin"]').waitFor();
  const save = theirs.locator('a.file-save');
  await save.waitFor({ timeout: 120000 });
  await eventually('focus on the Save link', () => save.evaluate((a) => a === document.activeElement));
  const seenDown = await seenTexts(bob.page, 'download');
  assert.ok(seenDown.some((t) => /^\d+% · .* of 30 MB/.test(t)), `the download showed its percent: ${JSON.stringify(seenDown)}`);
  const hash = await theirs.locator('.file').getAttribute('data-hash');
  assert.equal(await save.getAttribute('href'), `/api/v1/files/${hash}/content?download=1`);
  assert.equal(await save.getAttribute('download'), 'big-archive.bin');
  await screenshots(bob.page, '63-file-saved');
  await bob.page.setViewportSize(DESKTOP);

  // Saving gives exactly the bytes alice shared.
  const [dl] = await Promise.all([bob.page.waitForEvent('download'), bob.page.keyboard.press('Enter')]);
  assert.equal(await dl.failure(), null, 'the download went through');
  assert.equal(dl.suggestedFilename(), 'big-archive.bin');
  const got = readFileSync(await dl.path());
  assert.equal(got.length, BIG);
  assert.equal(sha256(got), sha256(bytes));
});

test('a large upload cut off part way goes on from what the node holds', async () => {
  const bytes = randomBytes(20 * 1024 * 1024);
  const { page } = alice;
  // Every part's offset, and the connection of the second part cut.
  const offsets = [];
  let cut = false;
  await page.route('**/api/v1/uploads/*?offset=*', async (route) => {
    const offset = Number(new URL(route.request().url()).searchParams.get('offset'));
    offsets.push(offset);
    if (offset > 0 && !cut) {
      cut = true;
      await route.abort('connectionreset');
    } else {
      await route.continue();
    }
  });
  try {
    await watchTexts(page, 'cut', '.upload .upload-note');
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.locator('#attach-button').click()]);
    await chooser.setFiles({ name: 'cut-off.bin', mimeType: 'application/octet-stream', buffer: bytes });
    await fileMsg(page, 'cut-off.bin').waitFor({ timeout: 60000 });
  } finally {
    await page.unroute('**/api/v1/uploads/*?offset=*');
  }
  const part = 8 * 1024 * 1024;
  assert.ok(cut, 'a part was cut off');
  assert.deepEqual(offsets, [0, part, part, 2 * part], 'after the cut it went on from the node\'s offset, never from the start');
  const seen = await seenTexts(page, 'cut');
  assert.ok(seen.includes('Connection lost; resuming…'), `the cut was shown: ${JSON.stringify(seen)}`);
  // What was shared is exactly the file, and no part is left on the node.
  const history = await nodeApi(nodeA, 'GET', '/channels/general/messages?limit=50');
  const shared = history.body.messages.find((m) => m.file && m.file.name === 'cut-off.bin');
  assert.equal(shared.file.size, bytes.length);
  const resp = await fetch(`${nodeA.apiUrl}/api/v1/files/${shared.file.hash}/content`, { headers: { Authorization: `Bearer ${nodeA.token}` } });
  assert.equal(sha256(Buffer.from(await resp.arrayBuffer())), sha256(bytes));
  assert.deepEqual(readdirSync(path.join(nodeA.dir, 'uploads')), []);
});

test('an upload can be cancelled while it runs', async () => {
  const { page } = alice;
  const cdp = await alice.context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 1024 * 1024 });
  try {
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.locator('#attach-button').click()]);
    await chooser.setFiles({ name: 'cancel-me.bin', mimeType: 'application/octet-stream', buffer: randomBytes(12 * 1024 * 1024) });
    const up = page.locator('#upload-slot .upload', { hasText: 'cancel-me.bin' });
    await up.locator('.xfer-text', { hasText: /^[1-9]\d?% · / }).waitFor();
    await up.locator('button[aria-label="Cancel the upload of cancel-me.bin"]').click();
    await up.waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input', 'focus back in the box');
  } finally {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
  }
  const history = await nodeApi(nodeA, 'GET', '/channels/general/messages?limit=50');
  assert.ok(!history.body.messages.some((m) => m.file && m.file.name === 'cancel-me.bin'), 'nothing was shared');
  await eventually('the cancelled upload\'s parts to go from the node', async () => readdirSync(path.join(nodeA.dir, 'uploads')).length === 0);
  assert.equal(await fileMsg(page, 'cancel-me.bin').count(), 0);
});

test("an upload the node refuses says the node's reason, and the caption comes back", async () => {
  const { page } = carol;
  await openChannel(carol, nodeC, 'general');
  const box = page.locator('#composer-input');
  await box.fill('the full report');
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.locator('#attach-button').click()]);
  await chooser.setFiles({ name: 'report.pdf', mimeType: 'application/pdf', buffer: Buffer.alloc(3 * 1024 * 1024, 7) });
  // Carol's node takes files up to 1 MiB (--max-file-mib 1).
  const up = page.locator('#upload-slot .upload', { hasText: 'report.pdf' });
  await up.locator('.upload-error', { hasText: /^Not shared: this node takes files up to 1048576 bytes/ }).waitFor();
  assert.equal(await box.inputValue(), 'the full report', 'the caption is back in the box');
  assert.equal(await fileMsg(page, 'report.pdf').count(), 0, 'no message shares it');
  // The list of uploads took room from the conversation, which still
  // shows its newest message.
  assert.ok(await atBottom(page), 'the timeline stays at its newest message');
  await screenshots(page, '64-file-upload-refused');
  const problems = await check(page, 'refused upload');
  assert.equal(problems.length, 0, `accessibility violations:\n${problems.join('\n')}`);
  // Dismissed, it goes, and focus goes back to the box.
  await up.locator('button[aria-label="Dismiss report.pdf"]').click();
  await up.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
});

test('the attach button is in the composer and reached by keyboard', async () => {
  const { page } = carol;
  await page.locator('#composer-input').focus();
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'attach-button');
  assert.equal(await page.locator('#attach-button').getAttribute('aria-label'), 'Attach a file');
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Enter')]);
  assert.ok(chooser, 'Enter opens the file picker');
  await chooser.setFiles([]);
});

test('a timeline with file messages has no serious or critical accessibility violation', async () => {
  const { page } = bob;
  await fileMsg(page, 'big-archive.bin').locator('a.file-save').waitFor();
  await msg(page, 'look at this sunset').locator('img.file-img').waitFor();
  // Keyboard: into the message and onto its Save link.
  const article = fileMsg(page, 'big-archive.bin');
  await article.focus();
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
  assert.equal(focused, 'Save big-archive.bin (30 MB)');
  const problems = await check(page, 'timeline with files');
  assert.equal(problems.length, 0, `accessibility violations:\n${problems.join('\n')}`);
});

test('a visitor sees shared files and has no attach button', async () => {
  await share(nodeA, 'lobby', 'welcome.png', 'image/png', await pngBytes(), 'welcome, visitors');
  const { page } = sam;
  await page.goto(nodeV.webUrl);
  await page.locator('#tab-visit').click();
  await page.locator('#display_name').fill('Sam');
  await page.locator('#auth-panel button[type=submit]').click();
  await chanItem(page, 'lobby').click();
  const m = msg(page, 'welcome, visitors');
  await m.waitFor({ timeout: 30000 });
  const img = m.locator('img.file-img[alt="welcome.png"]');
  await img.waitFor({ timeout: 60000 });
  await eventually("the visitor's preview has loaded", () => img.evaluate((i) => i.complete && i.naturalWidth === 64), 60000);
  assert.equal(await page.locator('#composer-input').isDisabled(), true);
  assert.equal(await page.locator('#attach-button').count(), 0, 'no attach button');
  assert.equal(await page.locator('#upload-slot').count(), 0);
  // Nor can a visitor drop a file on the conversation.
  const dt = await page.evaluateHandle(() => {
    const d = new DataTransfer();
    d.items.add(new File(['x'], 'x.txt', { type: 'text/plain' }));
    return d;
  });
  await page.locator('#timeline').dispatchEvent('dragenter', { dataTransfer: dt });
  assert.equal(await page.locator('#chat.dropping').count(), 0);
});

test('twenty images shared at once all show, however busy the node', async () => {
  // More than the node fetches at once by itself (4) or at all (16).
  const png = await pngBytes();
  const names = Array.from({ length: 20 }, (_, i) => `burst-${String(i).padStart(2, '0')}.png`);
  for (const name of names) {
    // Each its own file: a byte appended after the image's end changes
    // the hash, not the picture.
    await share(nodeA, 'general', name, 'image/png', Buffer.concat([png, Buffer.from(name)]));
  }
  const { page } = bob;
  try {
    for (const name of names) {
      const img = fileMsg(page, name).locator('img.file-img');
      await img.waitFor({ timeout: 60000 });
      await eventually(`${name} has loaded`, () => img.evaluate((i) => i.complete && i.naturalWidth === 64), 60000);
    }
  } catch (e) {
    // What the nodes said, to tell why.
    for (const n of [nodeA, nodeB]) console.log(n.log.filter((l) => /WARN|ERROR/.test(l)).slice(-40).join('\n'));
    throw e;
  }
  assert.equal(await page.locator('#timeline .file-error').count(), 0, 'no image failed');
});

test('a download can be cancelled, and goes on from what the node holds when asked again', async () => {
  const bytes = randomBytes(6 * 1024 * 1024);
  await share(nodeA, 'general', 'slow.bin', 'application/octet-stream', bytes, 'take your time');
  const { page } = dave;
  await openChannel(dave, nodeD, 'general');
  const card = fileMsg(page, 'slow.bin');
  await card.waitFor({ timeout: 30000 });
  await card.getByRole('button', { name: /^Download slow\.bin/ }).click();
  await card.locator('progress.xfer-bar').waitFor();
  const hash = await card.locator('.file').getAttribute('data-hash');
  const held = async () => (await nodeApi(nodeD, 'GET', `/files/${hash}`)).body.bytes || 0;
  await eventually('some of it is here', async () => (await held()) > 0);
  await card.getByRole('button', { name: 'Cancel the download of slow.bin' }).click();
  // Stopped: no error, the Download button back, what came kept.
  const again = card.getByRole('button', { name: /^Download slow\.bin/ });
  await again.waitFor();
  assert.equal(await card.locator('.file-error').count(), 0, 'a cancel is not an error');
  const status = await nodeApi(nodeD, 'GET', `/files/${hash}`);
  assert.equal(status.body.state, 'failed');
  assert.equal(status.body.reason, 'cancelled');
  const kept = await held();
  assert.ok(kept > 0 && kept < bytes.length, `kept what came: ${kept}`);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await held(), kept, 'nothing more arrives once cancelled');
  // Asked again, it goes on from there (the bar does not start at 0).
  await watchTexts(page, 'resume', '.file-card .xfer-text');
  await again.click();
  const save = card.locator('a.file-save');
  await save.waitFor({ timeout: 60000 });
  const seen = await seenTexts(page, 'resume');
  const first = seen.map((t) => Number((t.match(/^(\d+)%/) || [])[1])).find((p) => !Number.isNaN(p));
  assert.ok(first > 0, `the resumed download started from what was here: ${JSON.stringify(seen)}`);
  const resp = await fetch(`${nodeD.apiUrl}/api/v1/files/${hash}/content`, { headers: { Authorization: `Bearer ${nodeD.token}` } });
  assert.equal(sha256(Buffer.from(await resp.arrayBuffer())), sha256(bytes));
});

test('an image too large to come by itself shows its thumbnail at once, and comes whole when asked', async () => {
  const big = noisePng(2400, 2400);
  assert.ok(big.length > 16 * 1024 * 1024, `${big.length} bytes: more than the node fetches by itself`);
  const sent = await share(nodeA, 'general', 'valley.png', 'image/png', big, 'the whole valley');
  assert.match(sent.file.thumb || '', /^\/9j\//, 'the message carries a JPEG thumbnail');
  const { page } = bob;
  const theirs = msg(page, 'the whole valley');
  const thumb = theirs.locator('img.file-thumb');
  await thumb.waitFor({ timeout: 30000 });
  await eventually("bob's thumbnail has loaded", () => thumb.evaluate((i) => i.complete && i.naturalWidth > 0));
  assert.equal(await thumb.getAttribute('alt'), 'valley.png (preview)');
  assert.equal(await theirs.locator('img.file-img').count(), 0, 'not the image itself yet');
  assert.doesNotMatch(await theirs.innerText(), /null|undefined/);
  // Bob's node has not fetched it: the thumbnail came with the message.
  assert.equal((await nodeApi(nodeB, 'GET', `/files/${sent.file.hash}`)).status, 404);
  await screenshots(page, '66-file-thumbnail');
  await page.setViewportSize(DESKTOP);
  await theirs.getByRole('button', { name: /Show the full image valley\.png/ }).click();
  const full = theirs.locator('img.file-img');
  await full.waitFor({ timeout: 60000 });
  await eventually("bob's full image has loaded", () => full.evaluate((i) => i.complete && i.naturalWidth === 2400), 60000);
  assert.equal(await theirs.locator('img.file-thumb').count(), 0, 'the thumbnail gave way');
});

test('an image pasted in a direct message shows in the other browser, sealed on the way', async () => {
  const hello = await nodeApi(nodeA, 'POST', '/dms/bob', { text: 'a picture for you' });
  assert.equal(hello.status, 202, JSON.stringify(hello.body));
  const dmItem = (page, name) => page.locator(`#dm-list .chan[data-dm="${name}"]`);
  const { page } = alice;
  await dmItem(page, 'bob').click();
  await page.locator('#composer-input[data-dm="bob"]').waitFor();
  const box = page.locator('#composer-input');
  await box.fill('just between us');
  const png = await pngIn(page, 320, 200, 'secret.png');
  const sent = await page.evaluate(async (blob) => {
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'secret.png', { type: 'image/png' }));
    const ta = document.getElementById('composer-input');
    ta.focus();
    ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    const d = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }, png);
  const mine = page.locator('#timeline article.msg', { hasText: 'just between us' }).locator('img.file-img[alt="secret.png"]');
  await mine.waitFor({ timeout: 30000 });
  await eventually('alice sees her image', () => mine.evaluate((i) => i.complete && i.naturalWidth === 320));
  assert.equal(await box.inputValue(), '', 'the caption went with the image');

  // Bob's node fetches it from alice's and opens it; his browser shows it.
  await dmItem(bob.page, 'alice').click({ timeout: 30000 });
  const theirs = bob.page.locator('#timeline article.msg', { hasText: 'just between us' }).locator('img.file-img[alt="secret.png"]');
  await theirs.waitFor({ timeout: 60000 });
  await eventually("bob's image has loaded", () => theirs.evaluate((i) => i.complete && i.naturalWidth === 320 && i.naturalHeight === 200), 60000);
  await screenshots(bob.page, '65-dm-image');
  await bob.page.setViewportSize(DESKTOP);
  // What bob's node serves is what alice pasted, though it travelled and
  // is kept encrypted: the hash that names it is not the image's.
  const hash = await theirs.getAttribute('data-hash');
  const resp = await fetch(`${nodeB.apiUrl}/api/v1/files/${hash}/content`, { headers: { Authorization: `Bearer ${nodeB.token}` } });
  assert.equal(resp.status, 200);
  assert.equal(sha256(Buffer.from(await resp.arrayBuffer())), sent);
  const status = await nodeApi(nodeB, 'GET', `/files/${hash}`);
  assert.equal(status.body.channel, '', 'a direct message\'s file is in no channel');
  // Nobody outside the conversation can have bob's node fetch it.
  const carolTry = await nodeApi(nodeC, 'POST', `/files/${hash}/fetch`, {});
  assert.equal(carolTry.status, 404, JSON.stringify(carolTry.body));
});

// A PNG of `w`×`h` pixels of noise: it does not compress, so it is about
// as large as its pixels (3 bytes each).
function noisePng(w, h) {
  const row = w * 3 + 1;
  const raw = Buffer.alloc(row * h);
  const noise = randomBytes(w * 3 * h);
  for (let y = 0; y < h; y++) noise.copy(raw, y * row + 1, y * w * 3, (y + 1) * w * 3);
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bits per sample
  ihdr[9] = 2; // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw, { level: 1 })), chunk('IEND', Buffer.alloc(0))]);
}

// A small PNG made by alice's browser, as bytes.
async function pngBytes() {
  const blob = await pngIn(alice.page, 64, 64, 'hi');
  const b64 = await alice.page.evaluate(async (b) => {
    const buf = new Uint8Array(await b.arrayBuffer());
    let s = '';
    for (const x of buf) s += String.fromCharCode(x);
    return btoa(s);
  }, blob);
  return Buffer.from(b64, 'base64');
}
