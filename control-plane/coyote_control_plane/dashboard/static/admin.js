// Admin (accounts, users and roles), API keys, and the audit log.

import { api } from './api.js';
import { Table, badge, card, col, control, dialog, field, folded, h, note, num, select, show, time, toast } from './ui.js';

const ROLES = ['admin', 'trader', 'risk', 'viewer'];
// The roles each role may give its keys: never more than itself (security.GRANTS).
const GRANTABLE = { admin: ROLES, trader: ['trader', 'viewer'], risk: ['risk', 'viewer'] };
const input = (name, props) => h('input', { name, ...props });

export async function renderAdmin(main, ctx) {
  const me = ctx.me.user.id;
  const accounts = new Table([
    col('Account', (a) => [h('b', null, a.name), h('small.sub', null, a.account_id)]),
    col('Broker', (a) => `${a.broker} · ${a.venue} · ${a.currency}`),
    col('Capital', (a) => num(a.capital, 2), 'num'),
    col('Allocated', (a) => num(a.allocated, 2), 'num'),
    col('Credentials', (a) => a.credentials_path || '—'),
    col('', (a) => control('Delete…', () => remove(a), 'small.danger'), 'actions'),
  ], { key: (a) => a.name, empty: 'No accounts yet.' });

  const users = new Table([
    col('User', (u) => [h('b', null, u.email), h('small.sub', null, u.name)]),
    col('Role', (u) => {
      if (u.id === me) return u.role;
      const el = select('role', ROLES, u.role);
      el.setAttribute('aria-label', `Role of ${u.email}`);
      el.setAttribute('data-control', 'role');
      el.onchange = () => patch(u, { role: el.value });
      return el;
    }),
    col('State', (u) => badge(u.disabled ? 'disabled' : 'active')),
    col('Created', (u) => time(u.created_ms)),
    col('', (u) => (u.id === me ? 'you' : control(u.disabled ? 'Enable' : 'Disable', () => patch(u, { disabled: !u.disabled }), 'small')), 'actions'),
  ], { key: (u) => u.id, empty: 'No users.' });

  async function load() {
    const [a, u] = await Promise.all([api('/v1/accounts'), api('/v1/users')]);
    accounts.set(a);
    users.set(u);
  }
  async function patch(u, body) {
    try {
      users.upsert(await api(`/v1/users/${u.id}`, { method: 'PATCH', body }));
      toast(`${u.email} updated`);
    } catch (err) {
      toast(err.message, 'error');
      await load();
    }
  }
  async function remove(a) {
    const done = await dialog({
      title: `Delete account ${a.name}?`,
      submitLabel: 'Delete account',
      danger: true,
      confirm: () => a.name,
      body: [note('Only an account no deployment trades can be deleted.')],
      submit: () => api(`/v1/accounts/${a.name}`, { method: 'DELETE' }),
    });
    if (done) await load();
  }
  async function addAccount() {
    const made = await dialog({
      title: 'Add an account',
      submitLabel: 'Add account',
      body: [
        field('Name', input('name', { placeholder: 'paper' })),
        field('Broker', select('broker', ['paper', 'alpaca', 'oanda'], 'paper')),
        field('Venue', input('venue', { placeholder: 'demo' }), 'Of its market data.'),
        field('Currency', input('currency', { value: 'USD' })),
        field('Capital (optional)', input('capital', { inputmode: 'decimal' })),
        field('Credentials path in Vault (optional)', input('credentials_path')),
      ],
      submit: (data) => api('/v1/accounts', { method: 'POST', body: Object.fromEntries([...data].filter(([, v]) => v.trim())) }),
    });
    if (made) accounts.upsert(made);
  }
  async function addUser() {
    const made = await dialog({
      title: 'Add a user',
      submitLabel: 'Add user',
      body: [
        field('Email', input('email', { type: 'email' })),
        field('Name', input('name')),
        field('Role', select('role', ROLES, 'viewer')),
        field('Password', input('password', { type: 'password', autocomplete: 'new-password' }), 'At least 12 characters; none for an API-only user.'),
      ],
      submit: (data) => api('/v1/users', { method: 'POST', body: { ...Object.fromEntries(data), password: data.get('password') || null } }),
    });
    if (made) users.upsert(made);
  }

  main.append(
    card('Accounts', control('Add account…', addAccount, 'primary'), accounts.el),
    card('Users and roles', control('Add user…', addUser, 'primary'), users.el),
  );
  await load();
}

export async function renderKeys(main, ctx) {
  const keys = new Table([
    col('Name', (k) => [h('b', null, k.name), h('small.sub', null, `cyk_${k.prefix}_…`)]),
    col('Role', (k) => k.role),
    col('Owner', (k) => k.user_email),
    col('Created', (k) => time(k.created_ms)),
    col('Last used', (k) => time(k.last_used_ms)),
    col('Expires', (k) => time(k.expires_ms)),
    col('State', (k) => badge(k.revoked_ms ? 'revoked' : k.expires_ms && k.expires_ms < Date.now() ? 'expired' : 'active')),
    col('', (k) => !k.revoked_ms && control('Revoke…', () => revoke(k), 'small.danger'), 'actions'),
  ], { key: (k) => k.prefix, empty: 'No API keys yet.' });
  const load = async () => keys.set(await api('/v1/api-keys'));

  async function create() {
    const made = await dialog({
      title: 'New API key',
      submitLabel: 'Create key',
      body: [
        field('Name', input('name', { placeholder: 'laptop CLI' })),
        field('Role', select('role', GRANTABLE[ctx.role], ctx.role), 'No more than your own.'),
        field('Expires in days', input('days', { type: 'number', min: 1 }), 'Empty: never.'),
      ],
      submit: (data) => api('/v1/api-keys', {
        method: 'POST',
        body: { name: data.get('name'), role: data.get('role'), expires_in_days: +data.get('days') || null },
      }),
    });
    if (!made) return;
    await load();
    show('Your new key', note('Copy it now: it is shown only once and kept only as a hash.', 'warn'),
      h('input.secret', { readonly: true, value: made.key, 'aria-label': 'The new key', onfocus: (e) => e.target.select() }));
  }
  async function revoke(k) {
    const done = await dialog({
      title: `Revoke key ${k.name}?`,
      submitLabel: 'Revoke key',
      danger: true,
      body: [note(`cyk_${k.prefix}_… of ${k.user_email} stops working at once.`)],
      submit: () => api(`/v1/api-keys/${k.prefix}`, { method: 'DELETE' }),
    });
    if (done) await load();
  }

  main.append(card(ctx.can('admin') ? 'API keys of the organisation' : 'Your API keys', control('New key…', create, 'primary'),
    note('For the CLI (coyote-sdk login), scripts and runtimes.'), keys.el));
  await load();
}

export async function renderAudit(main) {
  const entries = new Table([
    col('Time', (e) => time(e.ts_ms)),
    col('Actor', (e) => e.actor),
    col('Action', (e) => h('code', null, e.action)),
    col('Target', (e) => e.target),
    col('From', (e) => e.source_ip || '—'),
    col('Details', (e) => folded(e.detail)),
  ], { key: (e) => e.id, empty: 'No entries match.', limit: 5000 });
  const form = h('form.filters', null,
    ['action', 'actor', 'target'].map((k) => h('label', null, `${k} `, input(k, { size: 14 }))),
    h('button.btn.small', { type: 'submit' }, 'Search'));
  const more = h('button.btn.small', { type: 'button', onclick: () => load(false) }, 'Load more');

  async function load(reset = true) {
    const last = entries.all().at(-1);
    const page = await api('/v1/audit', { query: { ...Object.fromEntries(new FormData(form)), limit: 100, until_ms: reset ? null : last?.ts_ms } });
    if (reset) entries.set([]);
    entries.append(page);
    more.hidden = page.length < 100;
  }
  form.onsubmit = (e) => {
    e.preventDefault();
    load();
  };
  main.append(card('Audit log', null, form, entries.el, more));
  await load();
}
