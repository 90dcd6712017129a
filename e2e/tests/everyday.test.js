// Everyday use the first week would find: the composer counts the body
// limit (in UTF-8 bytes, as the server does) and refuses a long text
// before sending, without cutting it; a restarted node comes back where
// its open tab expects it — same address, same sign-in — while the tab,
// meanwhile, says that its own node is down and what to do; and "Invite
// people" gives what a friend needs, or says why nobody else can join;
// unread you can trust: a "New" divider and a jump to it, and a new
// member's first sync of older history is not counted as unread.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startNode, startUp, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots, DESKTOP } from '../lib/browser.js';

const PASSWORD = 'correct horse battery';
let server, node, finnNode, browser, dana;
const procs = () => [node, finnNode, server].filter(Boolean);

before(async () => {
  server = await startServer();
  node = await startNode('dana-node', server.addr);
  browser = await launch();
  dana = await newUser(browser, 'dana');
  await eventually('the node reaches the server', async () => (await nodeApi(node, 'GET', '/node')).body.server_connected);
  const reg = await nodeApi(node, 'POST', '/session/register', { username: 'dana', password: PASSWORD });
  assert.ok(reg.status < 300, JSON.stringify(reg.body));
  const made = await nodeApi(node, 'POST', '/channels', { name: 'notes', visibility: 'public' });
  assert.ok(made.status < 300, JSON.stringify(made.body));
  await dana.page.goto(node.webUrl);
  await dana.page.locator('.chan[data-channel="notes"]').click();
  await dana.page.locator('#composer-input').waitFor();
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

const msg = (page, text) => page.locator('#timeline article.msg', { hasText: text });

test('the composer counts the body limit in bytes and refuses a long text before sending', async () => {
  const { page } = dana;
  const box = page.locator('#composer-input');
  const counter = page.locator('#body-count');
  const send = page.locator('#composer .send-btn');
  const limit = (await nodeApi(node, 'GET', '/node')).body.max_body_len;
  assert.equal(limit, 4000);

  // Far from the limit nothing is shown.
  await box.fill('short and sweet');
  assert.equal(await counter.textContent(), '');

  // Near it, the count appears; 'é' is two bytes, so 1,900 of them are 3,800.
  await box.fill('é'.repeat(1900));
  await eventually('the counter near the limit', async () => (await counter.textContent()) === '3,800 / 4,000');
  assert.equal(await send.isDisabled(), false);

  // Over it (2,001 × 2 bytes): marked, the send button is off, and Enter
  // explains instead of sending. Nothing is cut from the box.
  const long = 'é'.repeat(2001);
  await box.fill(long);
  await eventually('the counter over the limit', async () => (await counter.textContent()) === '4,002 / 4,000');
  assert.match(await counter.getAttribute('class'), /over/);
  assert.equal(await box.getAttribute('aria-invalid'), 'true');
  assert.equal(await send.isDisabled(), true);
  await box.press('Enter');
  const error = page.locator('#send-error');
  await eventually('the refusal', async () => /Too long to send: 4,002 bytes, the limit is 4,000\. Shorten it by 2 bytes/.test(await error.textContent()));
  assert.equal(await box.inputValue(), long, 'the text stays whole in the box');
  const sent = await nodeApi(node, 'GET', '/channels/notes/messages?limit=10');
  assert.equal(sent.body.messages.length, 0, 'nothing was sent');
  await screenshots(page, '09-body-limit');
  await page.setViewportSize(DESKTOP);

  // A paste of 20,000 characters is kept whole too (no silent cut).
  await box.fill('x'.repeat(20000));
  assert.equal((await box.inputValue()).length, 20000);

  // Shortened to the limit exactly: the error goes, and it sends.
  const exact = `${'é'.repeat(1999)}ok`;
  await box.fill(exact);
  await eventually('the error cleared', async () => (await error.textContent()) === '');
  await box.press('Enter');
  await eventually('the 4,000-byte message sent', async () => {
    const r = await nodeApi(node, 'GET', '/channels/notes/messages?limit=10');
    return r.body.messages.some((m) => m.body === exact);
  });
  assert.equal(await box.inputValue(), '');
});

test('a restarted node comes back at the same address, and its tab reconnects by itself', async () => {
  const { page } = dana;
  const url = node.webUrl;
  const apiUrl = node.apiUrl;
  await page.locator('#composer-input').fill('before the restart');
  await page.locator('#composer-input').press('Enter');
  await msg(page, 'before the restart').waitFor();
  // A live chip to watch: the server's connection.
  await eventually('no banner while all is well', async () => (await page.locator('#banner-node').count()) === 0);

  // kill -9: the tab says its own node is down and what to do, and stops
  // showing what the node last said as live.
  await node.kill();
  const banner = page.locator('#banner-node');
  await banner.waitFor({ timeout: 20000 });
  assert.match(await banner.textContent(), /Your node is not running/);
  assert.match(await banner.textContent(), /segchat up/);
  assert.equal(await page.locator('#banner-server').count(), 0, 'not blamed on the server');
  assert.match(await page.locator('div.layout').getAttribute('class'), /node-down/);
  // Sending meanwhile says the same, and keeps the text.
  const box = page.locator('#composer-input');
  await box.fill('typed while the node was down');
  await box.press('Enter');
  await eventually('the send refusal', async () => /your node is not running/.test(await page.locator('#send-error').textContent()));
  assert.equal(await box.inputValue(), 'typed while the node was down');
  await screenshots(page, '10-node-down');
  await page.setViewportSize(DESKTOP);

  // Back in the same data directory: the same address and token, so the
  // same tab (never reloaded) reconnects and the kept text goes out.
  node = await startNode('dana-node', server.addr, node.dir);
  assert.equal(node.apiUrl, apiUrl, 'the API comes back on its last address');
  assert.equal(node.webUrl, url, 'the link printed is the same link');
  await banner.waitFor({ state: 'detached', timeout: 30000 });
  assert.doesNotMatch(await page.locator('div.layout').getAttribute('class'), /node-down/);
  await box.press('Enter');
  await msg(page, 'typed while the node was down').waitFor();

  // A clean stop and start keeps it too.
  await node.stop();
  await banner.waitFor({ timeout: 20000 });
  node = await startNode('dana-node', server.addr, node.dir);
  assert.equal(node.apiUrl, apiUrl);
  await banner.waitFor({ state: 'detached', timeout: 30000 });
  await box.fill('after a clean restart');
  await box.press('Enter');
  await msg(page, 'after a clean restart').waitFor();
});

test('Invite people: the server address, its key and the command, for a node of a remote server', async () => {
  const { page } = dana;
  await page.locator('#invite-people').click();
  await page.locator('#invite-title').waitFor();
  const info = (await nodeApi(node, 'GET', '/node')).body;
  assert.equal(info.invite.reach, 'remote');
  assert.match(info.server_key, /^[0-9a-f]{64}$/);
  assert.equal(await page.locator('#invite-addr').inputValue(), server.addr);
  assert.equal(await page.locator('#invite-key').inputValue(), info.server_key);
  assert.equal(await page.locator('#invite-command').inputValue(), `segchat node --server ${server.addr} --server-key ${info.server_key}`);
  assert.equal(await page.locator('#invite-local-only').count(), 0);
  await screenshots(page, '11-invite');
  await page.setViewportSize(DESKTOP);
  await page.locator('#invite-done').click();
  await page.locator('#invite-title').waitFor({ state: 'hidden' });
});

test('segchat up on loopback: the invite says only this machine can reach it, and how to open it', async () => {
  const up = await startUp('up-local', '127.0.0.1:0');
  const u = await newUser(browser, 'erin');
  try {
    assert.match(up.invite, /only this machine can reach this server; .*segchat up --listen 0\.0\.0\.0:/);
    await eventually('the node reaches its server', async () => (await nodeApi(up, 'GET', '/node')).body.server_connected);
    const reg = await nodeApi(up, 'POST', '/session/register', { username: 'erin', password: PASSWORD });
    assert.ok(reg.status < 300, JSON.stringify(reg.body));
    await u.page.goto(up.webUrl);
    await u.page.locator('#invite-people').click();
    const warning = u.page.locator('#invite-local-only');
    await warning.waitFor();
    assert.match(await warning.textContent(), /Only this machine can reach your server/);
    assert.match(await warning.textContent(), /segchat up --listen 0\.0\.0\.0:\d+/);
    assert.equal(await u.page.locator('#invite-addr').count(), 0, 'no address to give out');
    assert.match(await u.page.locator('#invite-key').inputValue(), /^[0-9a-f]{64}$/);
    await screenshots(u.page, '12-invite-local-only');
  } finally {
    await u.context.close();
    await up.stop();
    removeDir(up.dir);
  }
});

test('unread you can trust: history is not news to a new member, and a New divider marks where news starts', async () => {
  const { page } = dana;
  await nodeApi(node, 'POST', '/channels', { name: 'other', visibility: 'public' });
  finnNode = await startNode('finn-node', server.addr);
  await eventually('finn\'s node reaches the server', async () => (await nodeApi(finnNode, 'GET', '/node')).body.server_connected);
  const reg = await nodeApi(finnNode, 'POST', '/session/register', { username: 'finn', password: PASSWORD });
  assert.ok(reg.status < 300, JSON.stringify(reg.body));
  await eventually('finn sees #notes', async () => (await nodeApi(finnNode, 'GET', '/channels')).body.channels.some((c) => c.name === 'notes'));
  assert.ok((await nodeApi(finnNode, 'POST', '/channels/notes/join')).status < 300);
  // Finn's node syncs what was said before he came: none of it is unread.
  await eventually('finn has the history', async () => {
    const r = await nodeApi(finnNode, 'GET', '/channels/notes/messages?limit=100');
    return r.body.messages.some((m) => m.body === 'after a clean restart');
  }, 30000);
  const finnUnread = (await nodeApi(finnNode, 'GET', '/unread')).body;
  assert.ok(!finnUnread.unread.notes, `history counted as unread: ${JSON.stringify(finnUnread)}`);

  // Dana is elsewhere while Finn writes 80 messages.
  await page.locator('.chan[data-channel="other"]').click();
  await page.locator('#chan-title', { hasText: 'other' }).waitFor();
  for (let i = 1; i <= 80; i++) {
    const r = await nodeApi(finnNode, 'POST', '/channels/notes/messages', { body: `news ${i}` });
    assert.ok(r.status < 300, JSON.stringify(r.body));
  }
  await eventually('dana counts 80 unread', async () => (await nodeApi(node, 'GET', '/unread')).body.unread.notes === 80, 30000);
  await eventually('the badge', async () => /80/.test(await page.locator('.chan[data-channel="notes"]').textContent()));

  // Back to #notes: the bar says how many and jumps to the first.
  await page.locator('.chan[data-channel="notes"]').click();
  const bar = page.locator('#new-bar');
  await bar.waitFor();
  assert.match(await bar.textContent(), /80 new messages/);
  await screenshots(page, '13-unread-bar');
  await page.setViewportSize(DESKTOP);
  await page.locator('#jump-unread').click();
  const divider = page.locator('#new-divider');
  await divider.waitFor();
  const next = await divider.evaluate((el) => el.nextElementSibling && el.nextElementSibling.textContent);
  assert.match(next, /news 1(?!\d)/, 'the divider sits right before the first unread message');
  const before = await divider.evaluate((el) => el.previousElementSibling && el.previousElementSibling.textContent);
  assert.match(before, /after a clean restart|typed while|before the restart|ok/, 'and after what was read');
  await eventually('the divider on screen', async () => divider.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const t = document.getElementById('timeline').getBoundingClientRect();
    return r.top >= t.top - 1 && r.bottom <= t.bottom + 1;
  }));
  await screenshots(page, '14-unread-divider', {
    desktop: async () => { await divider.evaluate((el) => el.scrollIntoView({ block: 'start' })); },
    phone: async () => { await divider.evaluate((el) => el.scrollIntoView({ block: 'start' })); },
  });
  // Opening the channel read it: the count is gone, the divider stays
  // while the channel is open.
  await eventually('read', async () => !(await nodeApi(node, 'GET', '/unread')).body.unread.notes);
  assert.equal(await divider.count(), 1);
});

test('input in the tab tells the node (presence follows the person), at most every 20 s', async () => {
  const { page } = dana;
  await page.waitForTimeout(21000 - 0); // past the throttle of earlier input
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.url().endsWith('/api/v1/activity') && r.method() === 'POST', { timeout: 10000 }),
    page.locator('#composer-input').press('a'),
  ]);
  assert.ok(req);
  let again = false;
  page.on('request', (r) => { if (r.url().endsWith('/api/v1/activity')) again = true; });
  for (let i = 0; i < 5; i++) await page.locator('#composer-input').press('b');
  await page.waitForTimeout(500);
  assert.equal(again, false, 'throttled');
});

test('shown idle after a while without input, online again at the next key', async () => {
  const idle = await startNode('ida-node', server.addr, undefined, { idleAfter: 2 });
  const u = await newUser(browser, 'ida');
  try {
    await eventually('ida\'s node reaches the server', async () => (await nodeApi(idle, 'GET', '/node')).body.server_connected);
    assert.ok((await nodeApi(idle, 'POST', '/session/register', { username: 'ida', password: PASSWORD })).status < 300);
    assert.ok((await nodeApi(idle, 'POST', '/channels', { name: 'ida-room', visibility: 'public' })).status < 300);
    await u.page.goto(idle.webUrl);
    const me = u.page.locator('#status-button');
    await me.waitFor();
    await eventually('idle without input', async () => /Idle/.test(await me.textContent()), 20000);
    assert.equal((await nodeApi(idle, 'GET', '/status')).body.status, 'idle');
    await u.page.keyboard.press('a');
    await eventually('online at the next key', async () => /Online/.test(await me.textContent()), 10000);
    assert.equal((await nodeApi(idle, 'GET', '/status')).body.status, 'online');
  } finally {
    await u.context.close();
    await idle.stop();
    removeDir(idle.dir);
  }
});

test('private channels from the UI: the owner invites, the invitee is told at once and joins', async () => {
  const { page } = dana;
  await page.setViewportSize(DESKTOP);
  assert.ok((await nodeApi(node, 'POST', '/channels', { name: 'backroom', visibility: 'private' })).status < 300);
  const finn = await newUser(browser, 'finn');
  try {
    await finn.page.goto(finnNode.webUrl);
    await finn.page.locator('#status-button').waitFor();
    assert.equal(await finn.page.locator('.chan[data-channel="backroom"]').count(), 0, 'private: not listed before an invitation');
    await eventually('dana sees #backroom', async () => (await page.locator('.chan[data-channel="backroom"]').count()) > 0);
    await page.locator('.chan[data-channel="backroom"]').click();
    await page.locator('#invite-to-channel').click();
    await page.locator('#invite-user').fill('finn');
    await screenshots(page, '15-invite-to-channel');
    await page.setViewportSize(DESKTOP);
    await page.locator('#invite-user-submit').click();
    await page.locator('#invite-user-title').waitFor({ state: 'hidden' });
    // Finn's tab is told without a reload, and can open and join it.
    const notice = finn.page.locator('#notice');
    await notice.waitFor({ timeout: 15000 });
    assert.match(await notice.textContent(), /dana invited you to #backroom/i);
    await finn.page.locator('.chan[data-channel="backroom"]').waitFor();
    await notice.locator('button', { hasText: 'Open #backroom' }).click();
    await finn.page.locator('#chan-title', { hasText: 'backroom' }).waitFor();
    await finn.page.locator('#join-channel').click();
    await finn.page.locator('#composer-input:not([disabled])').waitFor();
    await finn.page.locator('#composer-input').fill('thanks for the invite');
    await finn.page.locator('#composer-input').press('Enter');
    await page.locator('#timeline article.msg', { hasText: 'thanks for the invite' }).waitFor({ timeout: 20000 });
    // Inviting someone who does not exist says so.
    await page.locator('#invite-to-channel').click();
    await page.locator('#invite-user').fill('nobody-here');
    await page.locator('#invite-user-submit').click();
    await eventually('the refusal', async () => /no user named/.test(await page.locator('#invite-user-error').textContent()));
    await page.keyboard.press('Escape');
  } finally {
    await finn.context.close();
  }
});
