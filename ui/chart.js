// The chart of callbacks delivered and failed per minute over the last hour (SPEC §11),
// drawn as inline SVG from GET /stats/callbacks, with a text alternative: the SVG's
// title and description, a visible summary, and the per-minute figures as a table.

import { h, s } from './dom.js';

const hhmm = (iso) => iso.slice(11, 16);

/** What each chart last drew. */
const drawn = new WeakMap();

/**
 * Stacked bars per minute (delivered below, failed above), with a text alternative. It
 * is drawn at the figure's own width, so its labels keep their size on a phone.
 */
export function drawChart(figure, minutes) {
  // Redrawn only when the figures (or the minute) changed, keeping the table's open state.
  const data = JSON.stringify(minutes);
  if (drawn.get(figure) === data) return;
  drawn.set(figure, data);
  const wasOpen = Boolean(figure.querySelector('details[open]'));
  const W = Math.max(280, Math.round(figure.clientWidth || 600)), H = 150, left = 34, bottom = 22, top = 8;
  const total = (m) => m.delivered + m.failed;
  const max = Math.max(1, ...minutes.map(total));
  const sum = (k) => minutes.reduce((n, m) => n + m[k], 0);
  const step = (W - left) / Math.max(1, minutes.length);
  const y = (n) => H - bottom - ((H - bottom - top) * n) / max;
  const summary = `Last hour: ${sum('delivered')} delivered, ${sum('failed')} failed`;
  const bars = minutes.map((m, i) => {
    const x = left + i * step + 1;
    const label = `${hhmm(m.minute)} UTC: ${m.delivered} delivered, ${m.failed} failed`;
    return s('g', {}, s('title', {}, label),
      m.delivered && s('rect', { class: 'delivered', x, width: step - 2, y: y(m.delivered), height: y(0) - y(m.delivered) }),
      m.failed && s('rect', { class: 'failed', x, width: step - 2, y: y(total(m)), height: y(0) - y(m.failed) }));
  });
  const axis = minutes.length ? [
    s('text', { x: left, y: H - 6 }, hhmm(minutes[0].minute)),
    s('text', { x: W, y: H - 6, 'text-anchor': 'end' }, `${hhmm(minutes[minutes.length - 1].minute)} UTC`),
  ] : [];
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc' },
    s('title', { id: 'chart-title' }, 'Callbacks delivered and failed per minute, last 60 minutes'),
    s('desc', { id: 'chart-desc' }, `${summary}.`),
    s('line', { class: 'axis', x1: left, x2: W, y1: y(0), y2: y(0) }),
    s('text', { x: left - 6, y: top + 10, 'text-anchor': 'end' }, String(max)),
    s('text', { x: left - 6, y: y(0), 'text-anchor': 'end' }, '0'),
    axis, bars);
  const busy = minutes.filter(total);
  figure.replaceChildren(svg,
    h('figcaption', {},
      h('span', { class: 'key delivered' }, 'Delivered'), h('span', { class: 'key failed' }, 'Failed'),
      h('span', {}, `${summary}.`)),
    busy.length ? h('details', { open: wasOpen }, h('summary', {}, 'Minutes with callbacks'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Minute', 'Delivered', 'Failed'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, busy.map((m) => h('tr', {}, h('td', {}, `${hhmm(m.minute)} UTC`),
          h('td', {}, String(m.delivered)), h('td', {}, String(m.failed))))))) : null);
}
