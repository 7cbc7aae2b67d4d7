// The operator console (SPEC §11): a client of the public JSON API and nothing else.
//
// Every page is this module (with dom.js, api.js and chart.js beside it) on one HTML
// shell (ui/index.html): it asks GET /me who the key is, then draws the page the URL
// names — /ui (the list and the chart), /ui/requests/<id> (one request) or
// /ui/destinations[/<id>] (destinations.js) — and keeps
// it current by polling. Links are real links, so every view is a URL that loads
// directly. The API key, when the service
// requires one, lives in sessionStorage and goes out as `Authorization: Bearer`.
//
// Every value from the API enters the page as text, through dom.js: nothing in the
// console assigns innerHTML.

import { ApiError, KEY, Refused, api } from './api.js';
import { drawChart } from './chart.js';
import { destinationHref, destinationsPage } from './destinations.js';
import { badge, h, json, say, when } from './dom.js';

const LIST_POLL_MS = 2000;
const RECORD_POLL_MS = 2000;
const REDELIVERY_POLL_MS = 500;
const CHART_POLL_MS = 10000;
const PAGE_SIZE = 50;
const FILTERS = {
  mode: ['sync', 'async'],
  status: ['pending', 'processing', 'completed', 'failed'],
  callback_status: ['pending', 'sent', 'failed'],
};

const main = () => document.getElementById('main');

/** Replaces the page's content; pollers of the previous page see `generation` change. */
let generation = 0;
function show(...children) {
  generation += 1;
  main().replaceChildren(...children);
  return generation;
}

/**
 * Runs `tick` now and then again every `ms` (a number, or a function giving the next
 * pause) while the page drawn at `gen` is still shown.
 */
function poll(gen, ms, tick) {
  const run = async () => {
    if (gen !== generation) return;
    await tick();
    if (gen === generation) setTimeout(run, typeof ms === 'function' ? ms() : ms);
  };
  run();
}

/** Sends the caller back to the sign-in form when a key is refused mid-session. */
function failed(err, status) {
  if (err instanceof Refused) return signIn(true);
  status.textContent = `Could not reach the service: ${err.message}`;
}

const requestHref = (id) => `/ui/requests/${encodeURIComponent(id)}`;

// ---- Who is calling, and signing in --------------------------------------------------

async function start() {
  let me;
  try {
    me = await api('/me');
  } catch (err) {
    if (err instanceof Refused) return signIn(sessionStorage.getItem(KEY) !== null);
    show(h('p', { role: 'alert' }, `Could not reach the service: ${err.message}`));
    return;
  }
  enter(me);
}

function enter(me) {
  account(me);
  const match = location.pathname.match(/^\/ui\/requests\/([^/]+)\/?$/);
  const destination = location.pathname.match(/^\/ui\/destinations(?:\/([^/]+))?\/?$/);
  if (match) requestPage(decodeURIComponent(match[1]));
  else if (destination) {
    const only = destination[1] ? decodeURIComponent(destination[1]) : null;
    destinationsPage({ show, poll, failed, signIn }, only);
  } else listPage(me);
}

/** The account corner: who the key is, and a way out. */
function account(me) {
  const nav = document.getElementById('account');
  if (!me) return nav.replaceChildren();
  if (!me.auth_required) return nav.replaceChildren(h('span', {}, 'Open mode: no API keys'));
  const signOut = h('button', { type: 'button', class: 'link', onclick: () => {
    sessionStorage.removeItem(KEY);
    signIn(false);
  } }, 'Sign out');
  nav.replaceChildren(h('span', {}, `Tenant ${me.tenant}${me.admin ? ' (admin)' : ''}`), signOut);
}

/** The sign-in form (SPEC §11); `refused` when the stored key was just refused. */
function signIn(refused) {
  sessionStorage.removeItem(KEY);
  account(null);
  const alert = h('p', { role: 'alert', class: 'error' });
  const input = h('input', {
    id: 'api-key', name: 'api-key', type: 'password', required: true,
    autocomplete: 'off', spellcheck: 'false',
  });
  const form = h('form', { class: 'card signin', onsubmit: submit },
    // The SPEC's labels (`API key`, `Sign in`) appear once each, so they name one control.
    h('h1', {}, 'Operator console'),
    h('p', {}, 'This service asks for a key. This browser tab keeps it until you sign out or close the tab.'),
    h('label', { for: 'api-key' }, 'API key'), input,
    h('button', { type: 'submit' }, 'Sign in'),
    alert);
  show(form);
  if (refused) alert.textContent = 'Invalid API key';
  input.focus();

  async function submit(event) {
    event.preventDefault();
    alert.textContent = '';
    const key = input.value.trim();
    // A header value must be visible ASCII; anything else cannot be a key.
    if (!/^[\x21-\x7e]+$/.test(key)) return refuse();
    sessionStorage.setItem(KEY, key);
    try {
      enter(await api('/me'));
    } catch (err) {
      if (err instanceof Refused) return refuse();
      sessionStorage.removeItem(KEY);
      alert.textContent = `Could not reach the service: ${err.message}`;
    }
  }

  function refuse() {
    sessionStorage.removeItem(KEY);
    alert.textContent = 'Invalid API key';
    input.select();
  }
}

// ---- The requests list ---------------------------------------------------------------

const COLUMNS = ['Request id', 'Tenant', 'Mode', 'Work', 'Status', 'Callback status', 'Created'];
/** A work's name (SPEC §13); the works themselves come from GET /works. */
const WORK_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** The filters and page named by the URL's query (unknown values are dropped). */
function listQuery(me) {
  const url = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const [name, allowed] of Object.entries(FILTERS)) {
    if (allowed.includes(url.get(name))) query.set(name, url.get(name));
  }
  if (WORK_NAME.test(url.get('work') || '')) query.set('work', url.get('work'));
  if (me.admin && url.get('tenant')) query.set('tenant', url.get('tenant'));
  if (url.get('cursor')) query.set('cursor', url.get('cursor'));
  return query;
}

function select(name, label, values, query) {
  const id = `filter-${name}`;
  const options = [h('option', { value: '' }, 'Any'),
    ...values.map((v) => h('option', { value: v, selected: query.get(name) === v }, v))];
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('select', { id, name }, options));
}

/** The work filter: its options are the works GET /works lists for this key. */
function workSelect(query) {
  const chosen = query.get('work');
  const field = select('work', 'Work', chosen ? [chosen] : [], query);
  const menu = field.querySelector('select');
  api('/works').then(({ works }) => {
    const names = works.map((w) => w.name);
    if (chosen && !names.includes(chosen)) names.push(chosen);
    menu.replaceChildren(h('option', { value: '' }, 'Any'),
      ...names.map((n) => h('option', { value: n, selected: n === chosen }, n)));
  }).catch(() => {}); // The list's own refresh reports a refused key or an outage.
  return field;
}

function listPage(me) {
  let query = listQuery(me);
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const status = h('p', { class: 'status', role: 'status' });
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const chart = h('figure', { class: 'chart' });
  const filters = h('form', { class: 'filters', 'aria-label': 'Filters', onsubmit: (e) => e.preventDefault() },
    select('mode', 'Mode', FILTERS.mode, query),
    select('status', 'Status', FILTERS.status, query),
    select('callback_status', 'Callback status', FILTERS.callback_status, query),
    workSelect(query),
    me.admin && h('div', { class: 'field' }, h('label', { for: 'filter-tenant' }, 'Tenant'),
      h('input', { id: 'filter-tenant', name: 'tenant', value: query.get('tenant') || '',
        autocomplete: 'off', spellcheck: 'false', pattern: '[a-z0-9_\\-]{1,64}' })));
  const gen = show(
    h('p', {}, h('a', { href: '/ui/destinations' }, 'Destinations')),
    h('h1', {}, 'Requests'),
    chartSection(chart),
    h('div', { class: 'tools' }, filters, searchForm()),
    count, status,
    h('div', { class: 'table' }, h('table', { class: 'requests' },
      h('caption', { class: 'visually-hidden' }, 'Requests, newest first'),
      h('thead', {}, h('tr', {}, COLUMNS.map((t) => h('th', { scope: 'col' }, t)))),
      rows)),
    pager);

  // A changed filter starts again from the newest page, and is kept in the URL.
  filters.addEventListener('change', () => {
    query = new URLSearchParams();
    for (const field of filters.elements) {
      if (field.value && field.checkValidity()) query.set(field.name, field.value.trim());
    }
    history.replaceState(null, '', query.size ? `/ui?${query}` : '/ui');
    refresh();
    refreshChart(chart, query.get('tenant'));
  });

  async function refresh() {
    const asked = query.toString();
    let page;
    try {
      page = await api(`/requests?${asked}${asked ? '&' : ''}limit=${PAGE_SIZE}`);
    } catch (err) {
      return failed(err, status);
    }
    if (asked !== query.toString()) return; // The filters changed while this was in flight.
    say(status, '');
    renderRows(rows, page.requests);
    const shown = page.requests.length;
    say(count, shown === page.total
      ? `${page.total} ${page.total === 1 ? 'request' : 'requests'}`
      : `Showing ${shown} of ${page.total} requests`);
    renderPager(pager, query, page.next_cursor);
  }
  poll(gen, LIST_POLL_MS, refresh);
  poll(gen, CHART_POLL_MS, () => refreshChart(chart, query.get('tenant')));
}

/** Rows keyed by request id: existing rows are updated in place (focus stays put). */
function renderRows(tbody, requests) {
  const existing = new Map([...tbody.rows].map((tr) => [tr.dataset.id, tr]));
  requests.forEach((r, i) => {
    const cells = [
      h('a', { href: requestHref(r.id) }, h('code', {}, r.id)),
      r.tenant, r.mode, r.work, badge(r.status), badge(r.callback_status), when(r.created_at),
    ];
    let tr = existing.get(r.id);
    if (!tr) {
      tr = h('tr', { 'data-id': r.id }, cells.map((c, j) => h('td', { 'data-label': COLUMNS[j] }, c)));
    } else {
      cells.slice(1).forEach((c, j) => tr.cells[j + 1].replaceChildren(c));
      existing.delete(r.id);
    }
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
  });
  for (const gone of existing.values()) gone.remove();
  if (!requests.length) {
    tbody.append(h('tr', { 'data-id': '' }, h('td', { colspan: COLUMNS.length }, 'No requests match.')));
  }
}

function renderPager(nav, query, nextCursor) {
  const links = [];
  if (query.get('cursor')) {
    const first = new URLSearchParams(query);
    first.delete('cursor');
    links.push(h('a', { href: first.size ? `/ui?${first}` : '/ui' }, 'Newest requests'));
  }
  if (nextCursor) {
    const next = new URLSearchParams(query);
    next.set('cursor', nextCursor);
    links.push(h('a', { href: `/ui?${next}` }, 'Older requests'));
  }
  // Unchanged links stay, so a focused one keeps its focus across polls.
  const hrefs = (list) => list.map((a) => a.getAttribute('href')).join(' ');
  if (hrefs(links) !== hrefs([...nav.children])) nav.replaceChildren(...links);
}

/** `Request id` + `Search`: opens that request's page, or says there is none. */
function searchForm() {
  const input = h('input', { id: 'search-id', name: 'id', autocomplete: 'off', spellcheck: 'false' });
  const message = h('p', { class: 'status', role: 'status' });
  return h('form', { class: 'search', role: 'search', onsubmit: go },
    h('div', { class: 'field' }, h('label', { for: 'search-id' }, 'Request id'), input),
    h('button', { type: 'submit' }, 'Search'), message);

  async function go(event) {
    event.preventDefault();
    const id = input.value.trim();
    message.textContent = '';
    if (!id) return (message.textContent = 'Enter a request id.');
    try {
      await api(`/requests/${encodeURIComponent(id)}`);
      location.assign(requestHref(id));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) message.textContent = `No request with id ${id}.`;
      else failed(err, message);
    }
  }
}

// ---- The chart of callbacks per minute ----------------------------------------------

function chartSection(figure) {
  return h('section', { 'aria-labelledby': 'chart-heading' },
    h('h2', { id: 'chart-heading' }, 'Callbacks in the last hour'), figure);
}

/** The chart for `tenant` (an admin's filter), or for every record the key sees. */
async function refreshChart(figure, tenant) {
  try {
    const query = tenant ? `?${new URLSearchParams({ tenant })}` : '';
    drawChart(figure, (await api(`/stats/callbacks${query}`)).minutes);
  } catch (err) {
    if (err instanceof Refused) return signIn(true);
    figure.replaceChildren(h('p', { class: 'status' }, `Chart unavailable: ${err.message}`));
  }
}

// ---- One request ---------------------------------------------------------------------

const ATTEMPT_COLUMNS = ['Attempt', 'Time', 'Status code', 'Duration', 'Error', 'Trigger'];

function requestPage(id) {
  const status = h('p', { class: 'status', role: 'status' });
  const body = h('div');
  const redeliver = h('button', { type: 'button', hidden: true, onclick: () => redeliverNow() }, 'Redeliver');
  const actions = h('div', { class: 'actions' }, redeliver, status);
  const gen = show(
    h('p', {}, h('a', { href: '/ui' }, '← All requests')),
    h('h1', {}, 'Request ', h('code', {}, id)),
    body);
  let rendered = false;
  // While a redelivery asked for here has not ended: the attempts seen when it was asked.
  let awaiting = null;

  async function refresh() {
    let record;
    try {
      record = await api(`/requests/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        body.replaceChildren(h('p', {}, 'No such request.'));
        return;
      }
      return failed(err, status.isConnected ? status : body);
    }
    if (!rendered) {
      body.replaceChildren(...requestSections(record, actions));
      rendered = true;
    }
    updateRequest(body, record);
    redeliver.hidden = !['failed', 'sent'].includes(record.callback_status);
    if (awaiting !== null && record.attempts.length > awaiting && record.callback_status !== 'pending') {
      say(status, record.callback_status === 'sent' ? 'Delivered again.' : 'The new delivery failed.');
      awaiting = null;
    }
  }

  async function redeliverNow() {
    redeliver.disabled = true;
    status.textContent = 'Queuing a new delivery…';
    const seen = body.querySelectorAll('table.attempts tbody tr').length;
    try {
      await api(`/requests/${encodeURIComponent(id)}/redeliver`, 'POST');
      status.textContent = 'Queued: the new attempt will appear below.';
      awaiting = seen;
    } catch (err) {
      if (err instanceof Refused) return signIn(true);
      status.textContent = err.status === 409
        ? 'A delivery of this callback is already in progress.'
        : `Could not queue it: ${err.message}`;
    } finally {
      redeliver.disabled = false;
    }
    await refresh();
  }

  // Faster while a redelivery is on its way, so its attempt shows up promptly.
  poll(gen, () => (awaiting === null ? RECORD_POLL_MS : REDELIVERY_POLL_MS), refresh);
}

/** The request page's sections; the changing values carry `data-field` for updates. */
function requestSections(r, actions) {
  const fact = (label, field) => [h('dt', {}, label), h('dd', { 'data-field': field })];
  const sections = [
    h('dl', { class: 'facts' },
      fact('Tenant', 'tenant'), fact('Work', 'work'), fact('Mode', 'mode'), fact('Status', 'status'),
      fact('Created', 'created_at'), fact('Completed', 'completed_at'), fact('Error', 'error'),
      fact('Trace id', 'trace_id'),
      ...(r.work_attempts && r.work_attempts.length ? fact('Work attempts', 'work_attempts') : [])),
  ];
  if (r.mode === 'async') {
    sections.push(h('section', { 'aria-labelledby': 'callback-heading' },
      h('h2', { id: 'callback-heading' }, 'Callback'),
      h('dl', { class: 'facts' },
        fact('Callback URL', 'callback_url'), fact('Destination', 'destination_id'),
        fact('Callback status', 'callback_status'),
        fact('Attempts made', 'callback_attempts'), fact('Last error', 'callback_last_error'),
        fact('Sent at', 'callback_sent_at'), fact('Next planned attempt', 'callback_next_attempt_at')),
      actions,
      h('div', { class: 'table' }, h('table', { class: 'attempts' },
        h('caption', {}, 'Delivery attempts'),
        h('thead', {}, h('tr', {}, ATTEMPT_COLUMNS.map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {})))));
  } else {
    sections.push(h('section', { 'aria-labelledby': 'callback-heading' },
      h('h2', { id: 'callback-heading' }, 'Callback'), h('p', {}, 'A sync request has no callback.')));
  }
  sections.push(h('div', { class: 'io' },
    h('section', { 'aria-labelledby': 'input-heading' }, h('h2', { id: 'input-heading' }, 'Input'), h('div', { 'data-field': 'input_data' })),
    h('section', { 'aria-labelledby': 'output-heading' }, h('h2', { id: 'output-heading' }, 'Output'), h('div', { 'data-field': 'output_data' }))));
  return sections;
}

function updateRequest(body, r) {
  const value = {
    status: badge(r.status), callback_status: badge(r.callback_status),
    created_at: when(r.created_at), completed_at: when(r.completed_at),
    callback_sent_at: when(r.callback_sent_at), callback_next_attempt_at: when(r.callback_next_attempt_at),
    trace_id: h('code', {}, r.trace_id),
    destination_id: r.destination_id
      && h('a', { href: destinationHref(r.destination_id) }, originOf(r.callback_url)),
    input_data: json(r.input_data), output_data: json(r.output_data),
    work_attempts: json(r.work_attempts),
  };
  for (const dd of body.querySelectorAll('[data-field]')) {
    const field = dd.dataset.field;
    const v = field in value ? value[field] : r[field];
    dd.replaceChildren(v === null || v === undefined || v === '' ? '—' : v instanceof Node ? v : String(v));
  }
  const tbody = body.querySelector('table.attempts tbody');
  if (!tbody) return;
  const shown = tbody.rows.length;
  for (const a of r.attempts.slice(shown)) {
    const cells = [String(a.attempt), when(a.started_at, true), a.status_code === null ? '—' : String(a.status_code),
      `${a.duration_ms} ms`, a.error || '—', a.trigger];
    tbody.append(h('tr', {}, cells.map((c, j) => h('td', { 'data-label': ATTEMPT_COLUMNS[j] }, c))));
  }
}

/** `scheme://host:port` of a callback URL, as a destination names it. */
function originOf(url) {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return `${u.protocol}//${u.hostname}:${port}`;
  } catch {
    return url;
  }
}

start();
