// Accessibility checks with axe-core (WCAG 2.2 A and AA rules) in the page
// as it is. The script is evaluated through the browser's debugging
// protocol, so the page's Content-Security-Policy (script-src 'self')
// need not be loosened for it.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

// The serious and critical violations on the page now, one line each
// (rule, impact, how many nodes, the first node's selector and summary).
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async (tags) => {
    // Colours mid-transition (a hover fading in) are not the page's: wait
    // until running transitions and animations have settled.
    // (Endless ones, a pulsing badge say, are not waited for; nor longer
    // than a second in all.)
    const ending = document.getAnimations()
      .filter((a) => a.effect && a.effect.getComputedTiming().endTime !== Infinity)
      .map((a) => a.finished.catch(() => {}));
    await Promise.race([Promise.all(ending), new Promise((r) => setTimeout(r, 1000))]);
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    }));
  }, TAGS);
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export function describeViolations(list) {
  return list.map((v) => `${v.id} (${v.impact}, ${v.nodes.length}×): ${v.help}\n    first: ${v.nodes[0].target}\n    ${(v.nodes[0].summary || '').replace(/\n/g, '\n    ')}`).join('\n');
}
