// The console's Destinations page (SPEC §14): every destination the key sees, with its
// state, limit, attempts in flight, pending deliveries and last error; Pause / Resume and
// a rate limit per destination. /ui/destinations lists them; /ui/destinations/<id> shows
// one (each request's page links there). Rows are kept by id and updated in place, so a
// field being typed into or a focused button survives the polling.

import { ApiError, Refused, api } from './api.js';
import { h, say, when } from './dom.js';

const POLL_MS = 2000;
const COLUMNS = ['Origin', 'Tenant', 'State', 'Limit', 'In flight', 'Pending', 'Last error', 'Actions'];

export const destinationHref = (id) => `/ui/destinations/${encodeURIComponent(id)}`;

/** `paused`, `circuit open`, `rate limited` or `active`. */
function stateOf(d) {
  if (d.paused) return 'paused';
  if (d.circuit === 'open') return 'circuit open';
  if (d.rate_limit_per_s !== null) return `limited to ${d.rate_limit_per_s}/s`;
  return 'active';
}

/**
 * Draws the page through the console's `show`, `poll` and `failed` (from console.js);
 * `only` is one destination's id, or null for the list.
 */
export function destinationsPage({ show, poll, failed, signIn }, only) {
  const status = h('p', { class: 'status', role: 'status' });
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const rows = h('tbody');
  const gen = show(
    h('p', {}, h('a', { href: '/ui' }, '← All requests'),
      only ? [' · ', h('a', { href: '/ui/destinations' }, 'All destinations')] : null),
    h('h1', {}, 'Destinations'),
    count, status,
    h('div', { class: 'table' }, h('table', { class: 'destinations' },
      h('caption', { class: 'visually-hidden' }, 'Destinations, by tenant then origin'),
      h('thead', {}, h('tr', {}, COLUMNS.map((t) => h('th', { scope: 'col' }, t)))),
      rows)));

  async function refresh() {
    let list;
    try {
      list = only
        ? [await api(`/destinations/${encodeURIComponent(only)}`)]
        : (await api('/destinations?limit=100')).destinations;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        rows.replaceChildren();
        return say(count, 'No such destination.');
      }
      return failed(err, status);
    }
    renderRows(rows, list, act);
    say(count, `${list.length} ${list.length === 1 ? 'destination' : 'destinations'}`);
  }

  /** PATCHes `change` onto destination `id`, says how it went, and redraws. */
  async function act(id, change, what) {
    say(status, `${what}…`);
    try {
      await api(`/destinations/${encodeURIComponent(id)}`, 'PATCH', change);
      say(status, `${what}: done.`);
    } catch (err) {
      if (err instanceof Refused) return signIn(true);
      say(status, `${what}: ${err.message}`);
    }
    await refresh();
  }
  poll(gen, POLL_MS, refresh);
}

/** Rows keyed by destination id; a new row gets its controls once. */
function renderRows(tbody, destinations, act) {
  const existing = new Map([...tbody.rows].map((tr) => [tr.dataset.id, tr]));
  destinations.forEach((d, i) => {
    let tr = existing.get(d.id);
    if (tr) existing.delete(d.id);
    else tr = newRow(d, act);
    const cells = [d.tenant, stateOf(d), String(d.concurrency_limit), String(d.in_flight),
      d.pending_capped ? `${d.pending}+` : String(d.pending),
      d.last_error ? [d.last_error, d.blocked_until ? [' until ', when(d.blocked_until)] : null] : '—'];
    cells.forEach((c, j) => tr.cells[j + 1].replaceChildren(...[c].flat()));
    const pause = tr.querySelector('button.pause');
    say(pause, d.paused ? 'Resume' : 'Pause');
    pause.dataset.paused = String(d.paused);
    const rate = tr.querySelector('input');
    if (document.activeElement !== rate) rate.value = d.rate_limit_per_s ?? '';
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
  });
  for (const gone of existing.values()) gone.remove();
  if (!destinations.length) {
    tbody.append(h('tr', { 'data-id': '' }, h('td', { colspan: COLUMNS.length }, 'No destinations yet.')));
  }
}

function newRow(d, act) {
  const rateId = `rate-${d.id}`;
  const rate = h('input', { id: rateId, type: 'number', min: '0.01', max: '100000', step: 'any',
    inputmode: 'decimal', placeholder: 'none' });
  const pause = h('button', { type: 'button', class: 'pause', onclick: () => {
    const resume = pause.dataset.paused === 'true';
    act(d.id, { paused: !resume }, resume ? `Resuming ${d.origin}` : `Pausing ${d.origin}`);
  } }, 'Pause');
  const setRate = (event) => {
    event.preventDefault();
    const value = rate.value.trim();
    const limit = value === '' ? null : Number(value);
    act(d.id, { rate_limit_per_s: limit },
      limit === null ? `Removing the rate limit of ${d.origin}` : `Limiting ${d.origin} to ${limit}/s`);
  };
  const actions = h('div', { class: 'actions' }, pause,
    h('form', { class: 'rate', onsubmit: setRate },
      h('label', { for: rateId, class: 'visually-hidden' }, `Rate limit of ${d.origin} (per second)`), rate,
      h('button', { type: 'submit' }, 'Set rate')));
  return h('tr', { 'data-id': d.id },
    h('td', { 'data-label': COLUMNS[0] }, h('a', { href: destinationHref(d.id) }, d.origin)),
    COLUMNS.slice(1, -1).map((t) => h('td', { 'data-label': t })),
    h('td', { 'data-label': COLUMNS[COLUMNS.length - 1] }, actions));
}
