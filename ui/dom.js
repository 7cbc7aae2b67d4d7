// DOM building for the console: every value goes in as text (`Node.append` of a string)
// or through `setAttribute`, never as markup. Nothing in the console assigns innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** An HTML element; string children become text nodes. */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
/** An SVG element. */
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

/** Sets `el`'s text only when it changes, so a live region is not announced again. */
export function say(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** `2026-01-31T12:00:00.123Z` → `2026-01-31 12:00:00 UTC` (`…:00.123 UTC` when `ms`). */
export function when(iso, ms = false) {
  if (!iso) return '—';
  return h('time', { datetime: iso }, `${iso.slice(0, 10)} ${iso.slice(11, ms ? 23 : 19)} UTC`);
}

export const badge = (value) => (value ? h('span', { class: `badge ${value}` }, value) : '—');
export const json = (value) => h('pre', {}, value === null || value === undefined ? '—' : JSON.stringify(value, null, 2));
