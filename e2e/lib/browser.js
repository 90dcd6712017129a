// Debian's Chromium driven by playwright-core (no browser download).

import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { repoRoot } from './cluster.js';

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
export const SCREENSHOTS = path.join(repoRoot, 'screenshots');

export function chromiumPath() {
  const p = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(p)) throw new Error(`Chromium not found at ${p} (apt-get install chromium, or set CHROMIUM_PATH)`);
  return p;
}

// `fakeCamera`: Chromium's built-in test camera (a moving pattern), with
// camera access granted without a prompt, for the livestream tests.
export async function launch({ fakeCamera = false } = {}) {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(fakeCamera ? ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] : []),
    ],
  });
}

// A fresh browser profile (own cookies) with one page, at desktop width.
// `quiet`: console errors the test provokes on purpose (not printed).
export async function newUser(browser, name, { quiet = null } = {}) {
  const context = await browser.newContext({ viewport: DESKTOP, colorScheme: 'dark', locale: 'en-GB', timezoneId: 'UTC' });
  context.setDefaultTimeout(20000);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name} page error] ${e.message}`));
  page.on('console', (m) => {
    // A stopped node refuses connections; the page retries by design.
    if (m.type() === 'error' && !/ERR_CONNECTION_REFUSED|status of 40[01]/.test(m.text()) && !(quiet && quiet.test(m.text()))) {
      console.error(`[${name} console] ${m.text()}`);
    }
  });
  return { name, context, page };
}

// Desktop and phone screenshots of what the page shows now; `prepare`
// runs after resizing to phone width (e.g. to open a panel).
export async function screenshots(page, name, { phone: preparePhone, desktop: prepareDesktop } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const before = page.viewportSize();
  await page.setViewportSize(DESKTOP);
  if (prepareDesktop) await prepareDesktop();
  await page.waitForTimeout(250); // let transitions settle for the picture
  await page.screenshot({ path: path.join(SCREENSHOTS, `desktop-${name}.png`) });
  await page.setViewportSize(PHONE);
  if (preparePhone) await preparePhone();
  await page.waitForTimeout(350);
  await page.screenshot({ path: path.join(SCREENSHOTS, `phone-${name}.png`) });
  await page.setViewportSize(before || DESKTOP);
  await page.waitForTimeout(100);
}
