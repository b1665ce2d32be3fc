// The control plane's API (same origin, the session cookie) and its live event stream.

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    Object.assign(this, { status, code, field });
  }
}

/** Answers the JSON (or text), null for 204; throws an ApiError with the server's message. */
export async function api(path, { method = 'GET', body, query, text = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v != null && v !== '') url.searchParams.set(k, v);
  const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
  let answer;
  try {
    answer = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'connection.failed', `the control plane cannot be reached (${err.message})`);
  }
  if (answer.status === 204) return null;
  if (answer.ok) return text ? answer.text() : answer.json();
  const error = (await answer.json().catch(() => null))?.error;
  if (answer.status === 401 && path !== '/v1/auth/login') dispatchEvent(new Event('coyote:unauthenticated'));
  throw new ApiError(answer.status, error?.code, error?.message ?? `${answer.status} ${answer.statusText}`, error?.field);
}

/** A call whose failure means "nothing to show" (the reports may be unavailable). */
export const optional = (path, query) => api(path, { query }).catch(() => null);

const KINDS = ['bot.status', 'bot.crashed', 'bot.failed', 'bot.orders_cancelled', 'order.update', 'fill',
  'risk.rejection', 'alert', 'kill_switch.tripped', 'kill_switch.reset'];

/**
 * The organisation's live events (Server-Sent Events). The browser reconnects a dropped
 * stream itself; a refused one is retried here with backoff. After a gap, subscribers get a
 * `resync`: they may have missed events, so they reload.
 */
export class Live {
  handlers = new Map();
  state = 'off';
  retryMs = 1000;
  gap = false;

  on(kind, handler) {
    if (!this.handlers.has(kind)) this.handlers.set(kind, new Set());
    this.handlers.get(kind).add(handler);
    return () => this.handlers.get(kind).delete(handler);
  }

  emit(kind, event) {
    for (const handler of [...(this.handlers.get(kind) || []), ...(this.handlers.get('*') || [])]) {
      try {
        handler(event);
      } catch (err) {
        console.warn('live handler failed', err);
      }
    }
  }

  setState(state) {
    if (state !== this.state) this.emit('state', { kind: 'state', state: (this.state = state) });
  }

  start() {
    if (this.source) return;
    const source = (this.source = new EventSource('/v1/events'));
    this.setState('connecting');
    source.onopen = () => {
      this.retryMs = 1000;
      this.setState('live');
      if (this.gap) this.emit('resync', { kind: 'resync' });
      this.gap = false;
    };
    for (const kind of KINDS) source.addEventListener(kind, (m) => this.emit(kind, JSON.parse(m.data)));
    source.onerror = () => {
      this.gap = true;
      if (source.readyState !== EventSource.CLOSED) return this.setState('connecting');
      this.setState('down');
      this.source = null;
      this.timer = setTimeout(async () => {
        // A refused stream may be an ended session: /me tells, and ends it in the app.
        const alive = await api('/v1/auth/me').then(() => true, (err) => err.status !== 401);
        if (alive && this.state !== 'off') this.start();
      }, this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 30_000);
    };
  }

  stop() {
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
    this.setState('off');
  }
}
