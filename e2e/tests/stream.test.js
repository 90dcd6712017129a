// Livestreams in the web UI end to end: a real server and two real nodes.
// Alice's browser runs Chromium's fake camera; she goes live in a channel.
// Bob, in another browser on another node, sees the live badge, watches,
// and the player shows frames that change, with fps, latency and loss.
// Carol's node announces an address nothing listens on: watching her
// stream shows the node's reason. Screenshots go to ../screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startNode, nodeApi, eventually, removeDir } from '../lib/cluster.js';
import { launch, newUser, screenshots } from '../lib/browser.js';

const PASSWORD = 'correct horse battery';
let server, nodeA, nodeB, nodeC, camBrowser, plainBrowser;
let alice, bob;
const procs = () => [nodeA, nodeB, nodeC, server].filter(Boolean);

before(async () => {
  server = await startServer();
  [nodeA, nodeB, nodeC] = await Promise.all([
    startNode('streamer-node', server.addr),
    startNode('viewer-node', server.addr),
    // Peers are told 127.0.0.2, where nothing of this node listens.
    startNode('wrong-address-node', server.addr, undefined, { advertise: '127.0.0.2' }),
  ]);
  // Only the streamer's browser has the fake camera.
  camBrowser = await launch({ fakeCamera: true });
  plainBrowser = await launch();
  alice = await newUser(camBrowser, 'alice');
  bob = await newUser(plainBrowser, 'bob', { quiet: /status of 503/ });
});

after(async () => {
  for (const b of [camBrowser, plainBrowser]) if (b) await b.close();
  for (const p of procs()) await p.stop();
  for (const p of procs()) removeDir(p.dir);
});

async function register(u, node, username) {
  await u.page.goto(node.webUrl);
  await u.page.locator('#tab-register').click();
  await u.page.locator('#username').fill(username);
  await u.page.locator('#password').fill(PASSWORD);
  await u.page.locator('.auth-form button[type=submit]').click();
  await u.page.locator('#status-button').waitFor();
}

const frames = (page) => page.locator('#stream-player').evaluate((c) => Number(c.dataset.frames || 0));
const liveBadge = (page, name) => page.locator(`.chan[data-channel="${name}"] .live-badge`);

test('two people share a channel', async () => {
  await register(alice, nodeA, 'alice');
  await register(bob, nodeB, 'bob');
  const { page } = alice;
  await page.locator('#create-channel').click();
  await page.locator('#new-name').fill('live');
  await page.locator('input[name=visibility][value=public]').check();
  await page.locator('#create-submit').click();
  await page.locator('#chan-title', { hasText: 'live' }).waitFor();
  await page.locator('#link-state[data-via="hosting"]').waitFor();

  await bob.page.locator('section[aria-labelledby="sec-discover"] .chan[data-channel="live"]').click();
  // Not a member yet: "Go live" is there but disabled, saying why.
  const goLive = bob.page.locator('#go-live');
  await goLive.waitFor();
  assert.equal(await goLive.isDisabled(), true);
  assert.match(await goLive.getAttribute('title'), /Join #live to go live/);
  await bob.page.locator('#join-channel').click();
  await bob.page.locator('#go-live:not([disabled])').waitFor();
  await bob.page.locator('#composer-input:not([disabled])').waitFor();
});

test('alice goes live from her camera, with a preview', async () => {
  const { page } = alice;
  await page.locator('#go-live:not([disabled])').click();
  await page.locator('#stream-setup').waitFor();
  await page.locator('#stream-size').selectOption('320x240');
  await page.locator('#stream-fps').selectOption('10');
  await screenshots(page, 'stream-setup');
  await page.locator('#stream-start').click();
  await page.locator('#stream-own').waitFor();
  await eventually('frames pushed to the node', async () =>
    Number(await page.locator('#stream-own-stats').getAttribute('data-sent')) > 3);
  // The node streams what the browser pushes.
  const list = await nodeApi(nodeA, 'GET', '/streams');
  assert.equal(list.status, 200);
  assert.equal(list.body.own.length, 1);
  assert.equal(list.body.own[0].source, 'push');
  assert.equal(list.body.own[0].stream.channel, 'live');
  await liveBadge(page, 'live').waitFor();
  // Only one stream at a time from this page.
  assert.equal(await page.locator('#go-live').count(), 0);
});

test('bob sees the live badge, watches, and the player plays', async () => {
  const { page } = bob;
  // stream_started arrives over the event WebSocket: no reload.
  await liveBadge(page, 'live').waitFor();
  await page.locator('.live-row', { hasText: 'alice' }).waitFor();
  await page.locator('.live-row:has-text("alice") .stream-watch').click();
  await page.locator('#stream-player').waitFor();
  await eventually('frames in the player', async () => (await frames(page)) > 5, 30000);
  const first = await page.locator('#stream-player').evaluate((c) => c.toDataURL('image/png'));
  const n = await frames(page);
  await eventually('more frames', async () => (await frames(page)) > n + 3);
  const second = await page.locator('#stream-player').evaluate((c) => c.toDataURL('image/png'));
  assert.notEqual(first, second, 'the picture moves');
  const stats = page.locator('#stream-stats');
  await eventually('fps in the stats line', async () => Number(await stats.getAttribute('data-fps')) > 0);
  assert.match(await stats.textContent(), /\d+ fps · latency \d+ ms .* loss \d+\.\d%/);
  assert.equal(await stats.getAttribute('data-state'), 'playing');
  // The streamer sees its viewer.
  await eventually('viewer count', async () =>
    (await alice.page.locator('#stream-own-stats').getAttribute('data-viewers')) === '1');
  assert.match(await alice.page.locator('#stream-own-stats').textContent(), /1 viewer\b/);
  await screenshots(page, 'stream');
  await screenshots(alice.page, 'stream-streamer');
});

test('a streamer whose announced address is wrong is reached through the relay', async () => {
  const { page } = bob;
  await page.locator('#stream-unwatch').click();
  await page.locator('.live-row:has-text("alice") .stream-watch').waitFor();
  // Carol (API only) announces an address nobody listens on, as a node
  // behind NAT would: bob's node reaches hers through the server's relay.
  const reg = await nodeApi(nodeC, 'POST', '/session/register', { username: 'carol', password: PASSWORD });
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  const joined = await nodeApi(nodeC, 'POST', '/channels/live/join');
  assert.ok(joined.status < 300, JSON.stringify(joined.body));
  const started = await nodeApi(nodeC, 'POST', '/streams', { channel: 'live', source: 'test_pattern', width: 320, height: 240, fps: 5 });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const row = page.locator(`.live-row[data-stream="${started.body.stream.stream_id}"]`);
  await row.waitFor();
  await row.locator('.stream-watch').click();
  await page.locator('#stream-player').waitFor();
  await eventually('frames from carol through the relay', async () => (await frames(page)) > 3, 30000);
  assert.equal(await page.locator('#stream-error').count(), 0);
  await screenshots(page, 'stream-relayed');
  await page.locator('#stream-unwatch').click();
  assert.equal((await nodeApi(nodeC, 'DELETE', `/streams/${started.body.stream.stream_id}`)).status, 204);
  await row.waitFor({ state: 'detached' });
});

test('alice stops while bob watches; his player says so and the badge goes away', async () => {
  await bob.page.locator('.live-row:has-text("alice") .stream-watch').click();
  await bob.page.locator('#stream-player').waitFor();
  await eventually('frames before the end', async () => (await frames(bob.page)) > 2, 30000);
  await alice.page.locator('#stream-stop').click();
  await alice.page.locator('#stream-own').waitFor({ state: 'detached' });
  await liveBadge(bob.page, 'live').waitFor({ state: 'detached' });
  await bob.page.locator('#stream-message', { hasText: 'The stream ended.' }).waitFor();
  await screenshots(bob.page, 'stream-ended');
  await bob.page.locator('#stream-unwatch').click();
  await bob.page.locator('#stream-player').waitFor({ state: 'detached' });
  assert.equal(await bob.page.locator('.live-row').count(), 0);
  const list = await nodeApi(nodeA, 'GET', '/streams');
  assert.equal(list.body.own.length, 0);
  await alice.page.locator('#go-live:not([disabled])').waitFor();
});

test('a stream of hers started elsewhere shows as hers, and she can stop it', async () => {
  const started = await nodeApi(nodeA, 'POST', '/streams', { channel: 'live', source: 'test_pattern', width: 320, height: 240, fps: 5 });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const row = alice.page.locator(`.live-row[data-stream="${started.body.stream.stream_id}"]`);
  await row.getByText('You are live here from another tab').waitFor();
  assert.equal(await row.locator('.stream-watch').count(), 0, 'no Watch of her own stream');
  await liveBadge(bob.page, 'live').waitFor();
  await row.getByRole('button', { name: 'Stop' }).click();
  await row.waitFor({ state: 'detached' });
  await liveBadge(bob.page, 'live').waitFor({ state: 'detached' });
});
