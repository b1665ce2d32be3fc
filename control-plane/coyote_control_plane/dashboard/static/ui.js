// DOM helpers, formats, tables, dialogs, toasts. API data only ever goes in as text nodes.

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** h('button.btn.primary', {onclick, type: 'button'}, 'Text') */
export function h(tag, props, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.classList.add(...classes);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.classList.add(...String(v).split(' ').filter(Boolean));
    else if (k === 'value' || k === 'checked' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  return append(el, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  return append(el, children);
}

/** A button that changes something: marked, so tests can tell a viewer never sees one. */
export const control = (label, onclick, cls = '') =>
  h(`button.btn${cls ? '.' + cls : ''}`, { type: 'button', 'data-control': label, onclick }, label);
export const button = (label, onclick, cls = '') =>
  h(`button.btn${cls ? '.' + cls : ''}`, { type: 'button', onclick }, label);

// -- formats: decimal strings stay exact in the API; these are for reading -------------------

export function num(value, max = 8, min = 0) {
  if (value == null || value === '') return '—';
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString(undefined, { minimumFractionDigits: min, maximumFractionDigits: max }) : String(value);
}
export function money(value) {
  const n = Number(value);
  return h('span.num', { class: !value || !n ? '' : n > 0 ? 'pos' : 'neg' }, value == null ? '—' : num(value, 2, 2));
}

/** Local time: the clock for today, with the date otherwise; the UTC instant on hover. */
export function time(ms) {
  if (ms == null) return '—';
  const d = new Date(Number(ms));
  const today = d.toDateString() === new Date().toDateString();
  return h('time', { datetime: d.toISOString(), title: d.toISOString() },
    today ? d.toLocaleTimeString([], { hour12: false }) : d.toLocaleString([], { hour12: false }));
}
export function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
}
export const utcMidnight = (now = Date.now()) => now - (now % 86_400_000);
export const badge = (status, title) => h('span.badge', { 'data-status': status, title }, status);
export const side = (value) => h('span.side', { 'data-side': value }, value ?? '—');
export const note = (text, cls = '') => h(`p.note${cls ? '.' + cls : ''}`, null, text);
export const json = (value) => h('pre', null, JSON.stringify(value, null, 2));
/** A JSON object folded to its keys. */
export const folded = (value, none = '—') => (Object.keys(value || {}).length
  ? h('details', null, h('summary', null, Object.keys(value).join(', ')), json(value)) : none);
export const col = (label, value, cls) => ({ label, value, cls });

export function card(title, actions, ...body) {
  return h('section.card', null, h('header.card-head', null, h('h2', null, title), h('div.actions', null, actions)), body);
}

/** A table whose rows can be replaced, prepended or updated in place, by key. */
export class Table {
  constructor(columns, { key, empty = 'Nothing yet.', limit = 500, cls = '' }) {
    Object.assign(this, { columns, key: (row) => String(key(row)), empty, limit, rows: new Map(), body: h('tbody') });
    this.el = h('div.scroll', null, h(`table.cards${cls ? '.' + cls : ''}`, null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.cls }, c.label)))), this.body));
    this.set([]);
  }

  tr(row) {
    const tr = h('tr', { 'data-key': this.key(row) },
      this.columns.map((c) => h('td', { class: c.cls, 'data-label': c.label }, c.value(row))));
    tr.row = row;
    return tr;
  }

  placeholder() {
    this.body.querySelector('tr.empty')?.remove();
    if (!this.rows.size) this.body.append(h('tr.empty', null, h('td', { colspan: this.columns.length }, this.empty)));
  }

  set(rows) {
    this.rows.clear();
    this.body.replaceChildren();
    this.append(rows);
  }

  append(rows) {
    for (const row of rows) {
      if (this.rows.has(this.key(row))) continue;
      const tr = this.tr(row);
      this.rows.set(this.key(row), tr);
      this.body.append(tr);
    }
    this.placeholder();
  }

  /** Puts a row at the top, or updates (merges into) the row of its key where it is. */
  upsert(row, flash = true) {
    const k = this.key(row);
    const old = this.rows.get(k);
    const tr = this.tr(old ? { ...old.row, ...row } : row);
    if (old) old.replaceWith(tr);
    else this.body.prepend(tr);
    this.rows.set(k, tr);
    if (flash) tr.classList.add('flash');
    while (this.rows.size > this.limit) {
      this.rows.delete(this.body.lastChild.dataset.key);
      this.body.lastChild.remove();
    }
    this.placeholder();
  }

  all() {
    return [...this.rows.values()].map((tr) => tr.row);
  }
}

// -- dialogs, toasts ---------------------------------------------------------------------------

/**
 * A modal form. `submit(FormData)` may throw: its message shows and the dialog stays open.
 * `confirm()`: the text the user must type before the submit button is enabled (guarded
 * actions). Resolves with what `submit` answered, or null when cancelled.
 */
export function dialog({ title, body = [], submitLabel = 'OK', danger = false, confirm = null, submit }) {
  return new Promise((resolve) => {
    const error = h('p.error', { role: 'alert' });
    const ok = h(`button.btn.${danger ? 'danger' : 'primary'}`, { type: 'submit', 'data-control': submitLabel }, submitLabel);
    const expected = h('code');
    const typed = confirm && h('input', { autocomplete: 'off', 'aria-label': 'Type the name to confirm' });
    const form = h('form', { method: 'dialog' }, h('h2', null, title), body,
      typed && h('label.confirm', null, h('span', null, 'Type ', expected, ' to confirm'), typed), error,
      h('div.dialog-actions', null, button('Cancel', () => close(null)), ok));
    const sync = () => {
      if (!typed) return;
      expected.textContent = confirm();
      ok.disabled = !confirm() || typed.value.trim() !== confirm();
    };
    const el = h('dialog', { 'aria-label': title }, form);
    const close = (value) => {
      el.remove();
      resolve(value);
    };
    form.addEventListener('input', sync);
    form.addEventListener('change', sync);
    el.addEventListener('cancel', (e) => { e.preventDefault(); close(null); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      ok.disabled = true;
      error.textContent = '';
      try {
        close((await submit?.(new FormData(form))) ?? true);
      } catch (err) {
        error.textContent = err.message;
        ok.disabled = false;
        sync();
      }
    });
    document.body.append(el);
    sync();
    el.showModal();
  });
}

/** A modal that only shows something, with a Close button. */
export function show(title, ...body) {
  const el = h('dialog.wide', { 'aria-label': title }, h('h2', null, title), body,
    h('div.dialog-actions', null, button('Close', () => el.remove(), 'primary')));
  document.body.append(el);
  el.showModal();
}

export const field = (label, input, hint) => h('label.field', null, h('span', null, label), input, hint && h('small', null, hint));

export const select = (name, options, value) => h('select', { name }, options.map((o) => {
  const [v, text] = Array.isArray(o) ? o : [o, o];
  return h('option', { value: v, selected: v === value }, text);
}));

export function parseJson(text, name) {
  try {
    const value = JSON.parse(text || '{}');
    if (value?.constructor === Object) return value;
  } catch {
    // answered below
  }
  throw new Error(`${name}: not a JSON object`);
}

let toasts;
export function toast(message, kind = 'info') {
  toasts ??= document.body.appendChild(h('div.toasts', { role: 'status' }));
  const el = h('div.toast', { 'data-kind': kind }, message);
  toasts.prepend(el);
  while (toasts.children.length > 5) toasts.lastChild.remove();
  setTimeout(() => el.remove(), 8000);
}

/** Runs fn once, `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let timer;
  const wrapped = () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
