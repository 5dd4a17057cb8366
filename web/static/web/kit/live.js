// @ts-check
/**
 * The client kit's shared part: the HTTP client (session cookie or bearer token),
 * stream tickets, backoff, and LiveConnection, which keeps one stream open (SSE or
 * WebSocket), says which mode it is in, and falls back to polling when the stream
 * cannot be opened or keeps failing. channel.js and user.js build on it.
 *
 * Plain ES module, no build step, no dependency. Types are JSDoc (checked with
 * `npx -p typescript@5 tsc -p web/tsconfig.json`).
 */

/**
 * How a feed is getting its updates.
 * - `connecting`: the first snapshot and stream are on their way;
 * - `live`: the stream is open, changes arrive as they commit;
 * - `reconnecting`: the stream dropped and is being reopened from the last event id;
 * - `polling`: the stream could not be opened or kept failing: the feed polls at
 *   the server's `X-Poll-Interval` and keeps trying the stream, going back to `live`
 *   as soon as it opens;
 * - `stopped`: `stop()` was called, or the server refused the credentials.
 * @typedef {'connecting' | 'live' | 'reconnecting' | 'polling' | 'stopped'} Mode
 */

/**
 * @typedef {object} KitOptions
 * @property {string} [baseUrl] The API's origin, e.g. `https://api.example.com`; default: the page's.
 * @property {string | (() => string | null)} [token] A bearer token (or a function returning the current one).
 *   Given: REST calls send `Authorization: Bearer`, streams get a single-use ticket
 *   from `POST /v1/realtime/tickets`. Absent: the session cookie (and CSRF on writes).
 * @property {typeof fetch} [fetch] For tests or a fetch wrapper.
 * @property {number} [fallbackAfter] Failed stream attempts in a row before polling (default 3).
 * @property {number} [reconnectBaseMs] First reconnect delay (default 500); doubles, with jitter.
 * @property {number} [reconnectMaxMs] Longest delay between stream attempts, polling included (default 10000).
 * @property {number} [defaultPollSeconds] When an answer has no `X-Poll-Interval` (default 5).
 * @property {number} [openTimeoutMs] A stream not open (SSE) or subscribed (WebSocket) by then
 *   is a failed attempt (default 10000): a proxy that holds the request must not hold the feed.
 * @property {(entry: LogEntry) => void} [onLog] Every connection step, for a debug panel or a test.
 */

/**
 * @typedef {object} LogEntry
 * @property {number} at `Date.now()`.
 * @property {string} kind `open`, `close`, `event`, `stale`, `resync`, `poll`, `mode`, `error`...
 * @property {Record<string, unknown>} [detail]
 */

/** A problem-details error from the API (RFC 9457), or a network failure (`status` 0). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {any} [problem] The problem+json body, when there was one.
   */
  constructor(status, message, problem) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

/**
 * @typedef {object} ApiResponse
 * @property {number} status
 * @property {Headers} headers
 * @property {any} body The parsed JSON body; null for 304 and empty bodies.
 */

function readCookie(/** @type {string} */ name) {
  if (typeof document === 'undefined') return null;
  for (const part of document.cookie.split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return null;
}

/** REST calls with the page's session cookie or a bearer token, and stream URLs with tickets. */
export class Api {
  /** @param {KitOptions} [options] */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl ?? '').replace(/\/$/, '');
    this.token = options.token;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** @returns {string | null} */
  currentToken() {
    return typeof this.token === 'function' ? this.token() : this.token ?? null;
  }

  /** Cookies only without a token; to another origin only if it allows them (CORS). */
  credentials() {
    if (this.currentToken()) return 'omit';
    return this.baseUrl ? 'include' : 'same-origin';
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {{body?: any, form?: FormData, headers?: Record<string, string>, allow?: number[]}} [options]
   *   `allow`: statuses answered rather than thrown (e.g. 304).
   * @returns {Promise<ApiResponse>}
   */
  async request(method, path, options = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json', ...(options.headers ?? {}) };
    const token = this.currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (method !== 'GET' && method !== 'HEAD') {
      const csrf = readCookie('csrftoken');
      if (csrf) headers['X-CSRFToken'] = csrf;
    }
    /** @type {BodyInit | undefined} */
    let body;
    if (options.form) body = options.form;
    else if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await this.fetchImpl(this.baseUrl + path, {
        method, headers, body, credentials: this.credentials(), cache: 'no-store',
      });
    } catch (error) {
      throw new ApiError(0, `Network error: ${/** @type {Error} */ (error).message}`);
    }
    const text = response.status === 304 ? '' : await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (!response.ok && !(options.allow ?? []).includes(response.status)) {
      const detail = parsed && (parsed.detail || parsed.title);
      throw new ApiError(response.status, detail || `HTTP ${response.status}`, parsed);
    }
    return { status: response.status, headers: response.headers, body: parsed };
  }

  /** @param {string} path */
  get(path, /** @type {Record<string, string>} */ headers = {}, /** @type {number[]} */ allow = []) {
    return this.request('GET', path, { headers, allow });
  }

  /** @param {string} path @param {any} body @param {Record<string, string>} [headers] */
  post(path, body, headers = {}) {
    return this.request('POST', path, { body, headers });
  }

  /**
   * A URL for EventSource or WebSocket: with a fresh single-use ticket when a bearer
   * token is in use (a long-lived token never goes in a URL), bare otherwise (the
   * browser sends the session cookie).
   * @param {string} path
   * @param {Record<string, string | number | null | undefined>} [params]
   * @param {'http' | 'ws'} [scheme]
   */
  async streamUrl(path, params = {}, scheme = 'http') {
    const url = new URL(this.baseUrl + path, typeof location !== 'undefined' ? location.href : undefined);
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) url.searchParams.set(key, String(value));
    }
    if (this.currentToken()) {
      const { body } = await this.post('/v1/realtime/tickets', undefined);
      url.searchParams.set('ticket', body.ticket);
    }
    if (scheme === 'ws') url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.toString();
  }
}

/** A stream open this long was healthy: its end starts the backoff over. */
const HEALTHY_MS = 10000;

/** The event id a snapshot answer carries, or null. */
export function lastEventIdOf(/** @type {Headers} */ headers) {
  const raw = headers.get('X-Last-Event-ID');
  return raw !== null && /^\d+$/.test(raw) ? Number(raw) : null;
}

/** Seconds from `X-Poll-Interval`, or the fallback. */
export function pollIntervalOf(/** @type {Headers} */ headers, /** @type {number} */ fallback) {
  const value = Number(headers.get('X-Poll-Interval'));
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

/** Exponential backoff with full jitter, so that clients dropped together do not return together. */
export class Backoff {
  constructor(/** @type {number} */ baseMs, /** @type {number} */ maxMs) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.attempt = 0;
  }

  next() {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  reset() {
    this.attempt = 0;
  }
}

/**
 * What a transport reports to LiveConnection.
 * @typedef {object} TransportHandlers
 * @property {() => void} opened The stream is open and subscribed.
 * @property {(id: number, type: string, data: any) => void} event
 * @property {(latest: number) => void} resync The server no longer has what was missed.
 * @property {(reason: string, options?: {fatal?: boolean, clean?: boolean}) => void} closed
 *   `fatal`: do not try again (credentials refused); `clean`: an expected end (lifetime).
 */

/**
 * @typedef {object} Transport
 * @property {() => void} close
 */

/**
 * Server-Sent Events. The kit reconnects itself (not EventSource's own retry): a
 * ticket is single use, and it must count failures to know when to poll.
 * @param {string} url
 * @param {TransportHandlers} on
 * @param {boolean} [withCredentials] Send cookies to another origin (session auth across origins).
 * @returns {Transport}
 */
export function openEventSource(url, on, withCredentials = false) {
  const source = new EventSource(url, { withCredentials });
  let done = false;
  const finish = (/** @type {string} */ reason, /** @type {{fatal?: boolean, clean?: boolean}} */ options = {}) => {
    if (done) return;
    done = true;
    source.close();
    on.closed(reason, options);
  };
  source.onopen = () => on.opened();
  source.onmessage = (message) => {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (data.type === 'resync') {
      on.resync(Number(data.last_event_id));
      return;
    }
    on.event(Number(message.lastEventId), data.type, data);
  };
  // An error with the source CLOSED is an HTTP error answer (401, 404, 5xx) or a
  // refused connection; CONNECTING is a dropped stream the browser would retry.
  source.onerror = () => finish(source.readyState === EventSource.CLOSED ? 'refused' : 'dropped');
  return { close: () => { done = true; source.close(); } };
}

/**
 * WebSocket close codes the server uses (docs/api.md, "Events"). 4401 and 4403
 * stop the feed; 4000 reopens at once. Every other code reconnects with backoff, among
 * them those that say the client asked too much: 4008 (messages too fast), 4009 (a
 * message over the size limit) and 4429 (too many streams), which this kit never causes
 * by itself, so a retry later is the answer rather than a loop; and 4012 (a draining
 * server refused a new stream), after which another host answers.
 */
const WS_LIFETIME = 4000;
const WS_UNAUTHENTICATED = 4401;
const WS_FORBIDDEN = 4403;

/**
 * A WebSocket stream: subscribe (with `since`), then `{type, id, data}` events; ping
 * every `pingMs`, and a socket that does not answer within `pongMs` is closed.
 * @param {string} url
 * @param {Record<string, unknown>} subscribe The subscribe message (`since` added by the caller).
 * @param {TransportHandlers} on
 * @param {{pingMs?: number, pongMs?: number}} [timing]
 * @returns {Transport}
 */
export function openWebSocket(url, subscribe, on, timing = {}) {
  const pingMs = timing.pingMs ?? 25000;
  const pongMs = timing.pongMs ?? 10000;
  const socket = new WebSocket(url);
  let done = false;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let pinger;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let pongDue;
  const finish = (/** @type {string} */ reason, /** @type {{fatal?: boolean, clean?: boolean}} */ options = {}) => {
    if (done) return;
    done = true;
    clearInterval(pinger);
    clearTimeout(pongDue);
    try {
      socket.close();
    } catch {
      /* already closed */
    }
    on.closed(reason, options);
  };
  socket.onopen = () => {
    socket.send(JSON.stringify(subscribe));
    pinger = setInterval(() => {
      socket.send(JSON.stringify({ type: 'ping' }));
      pongDue = setTimeout(() => finish('no pong'), pongMs);
    }, pingMs);
  };
  socket.onmessage = (message) => {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    switch (data.type) {
      case 'subscribed':
        on.opened();
        break;
      case 'pong':
        clearTimeout(pongDue);
        break;
      case 'resync':
        on.resync(Number(data.last_event_id));
        break;
      case 'error':
        if (data.code === 'not_authenticated' || data.code === 'forbidden' || data.code === 'not_found') {
          finish(data.code, { fatal: true });
        }
        break;
      default:
        if (typeof data.id === 'number') on.event(data.id, data.type, data.data);
    }
  };
  socket.onclose = (close) => {
    if (close.code === WS_UNAUTHENTICATED || close.code === WS_FORBIDDEN) finish(`closed ${close.code}`, { fatal: true });
    else finish(`closed ${close.code}`, { clean: close.code === WS_LIFETIME });
  };
  return { close: () => finish('closed by the client', { clean: true }) };
}

/**
 * What a feed (channel.js, user.js) gives LiveConnection.
 * @typedef {object} FeedSource
 * @property {() => Promise<number | null>} snapshot Fetch the state; returns the stream's
 *   event id at the time of the snapshot (`X-Last-Event-ID`).
 * @property {(fromId: number | null, on: TransportHandlers) => Promise<Transport>} open
 *   Open the stream after event `fromId`.
 * @property {(id: number, type: string, data: any) => void} apply An event from the stream.
 * @property {() => Promise<{seconds: number, lastEventId: number | null}>} poll One
 *   conditional poll; returns when to poll next and, when the poll refreshed the whole
 *   state, the event id the stream may reopen from.
 */

/**
 * Keeps a feed current: snapshot, then the stream from the snapshot's event id;
 * reconnects from the last event id with backoff; refetches on `resync`; polls when
 * the stream cannot be opened or keeps failing, and goes back to the stream as soon
 * as it opens. Listeners hear every change of mode.
 */
export class LiveConnection {
  /**
   * @param {FeedSource} source
   * @param {KitOptions} options
   */
  constructor(source, options = {}) {
    this.source = source;
    this.fallbackAfter = options.fallbackAfter ?? 3;
    this.defaultPollSeconds = options.defaultPollSeconds ?? 5;
    this.backoff = new Backoff(options.reconnectBaseMs ?? 500, options.reconnectMaxMs ?? 10000);
    this.openTimeoutMs = options.openTimeoutMs ?? 10000;
    this.onLog = options.onLog;
    /** @type {Mode} */
    this.mode = 'connecting';
    /** Seconds between polls while polling (the server's `X-Poll-Interval`). */
    this.pollSeconds = this.defaultPollSeconds;
    /** @type {number | null} The last event id applied: where a reopened stream resumes. */
    this.lastEventId = null;
    /** Failed stream attempts since the last one that opened. */
    this.failures = 0;
    /** @type {Set<(mode: Mode) => void>} */
    this.modeListeners = new Set();
    /** @type {Set<() => void>} Told of a new mode and of a new poll interval. */
    this.statusListeners = new Set();
    /** @type {Transport | null} */
    this.transport = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.pollTimer = undefined;
    this.attempt = 0;
    this.stopped = false;
    this.onOnline = () => {
      if (this.mode === 'polling' || this.mode === 'reconnecting') this.connectSoon(0);
    };
  }

  /** @param {string} kind @param {Record<string, unknown>} [detail] */
  log(kind, detail) {
    this.onLog?.({ at: Date.now(), kind, detail });
  }

  /** @param {(mode: Mode) => void} listener @returns {() => void} unsubscribe */
  onMode(listener) {
    this.modeListeners.add(listener);
    return () => this.modeListeners.delete(listener);
  }

  /** @param {() => void} listener @returns {() => void} unsubscribe */
  onStatus(listener) {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** @param {Mode} mode */
  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.log('mode', { mode });
    for (const listener of this.modeListeners) listener(mode);
    for (const listener of this.statusListeners) listener();
  }

  async start() {
    this.stopped = false;
    if (typeof window !== 'undefined') window.addEventListener('online', this.onOnline);
    await this.refetch();
    this.connectSoon(0);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.pollTimer);
    this.transport?.close();
    this.transport = null;
    if (typeof window !== 'undefined') window.removeEventListener('online', this.onOnline);
    this.setMode('stopped');
  }

  /** The snapshot, retried with backoff until it answers (a resync, or the first load). */
  async refetch() {
    const delays = new Backoff(500, 10000);
    for (;;) {
      try {
        const head = await this.source.snapshot();
        this.log('snapshot', { head });
        if (head !== null) this.lastEventId = Math.max(this.lastEventId ?? 0, head);
        return;
      } catch (error) {
        this.log('error', { during: 'snapshot', message: String(error) });
        if (this.stopped || (error instanceof ApiError && (error.status === 401 || error.status === 403))) {
          this.stop();
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, delays.next()));
      }
    }
  }

  /** @param {number} delayMs */
  connectSoon(delayMs) {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  async connect() {
    if (this.stopped) return;
    this.transport?.close();
    this.transport = null;
    const attempt = ++this.attempt;
    const current = () => attempt === this.attempt && !this.stopped;
    let opened = false;
    let openedAt = 0;
    /** @type {TransportHandlers} */
    const handlers = {
      opened: () => {
        if (!current()) return;
        opened = true;
        openedAt = Date.now();
        clearTimeout(this.pollTimer);
        this.log('open', { from: this.lastEventId });
        this.setMode('live');
      },
      event: (id, type, data) => {
        if (!current()) return;
        // The stream delivers in order from where it was opened: anything at or
        // below the last id is a repeat, and the feed's version check drops stale state.
        if (this.lastEventId !== null && id <= this.lastEventId) {
          this.log('repeat', { id, type });
          return;
        }
        this.lastEventId = id;
        this.log('event', { id, type, version: data?.version });
        this.source.apply(id, type, data);
      },
      resync: (latest) => {
        if (!current()) return;
        this.log('resync', { latest });
        this.lastEventId = latest;
        // The events in between are gone: the state comes from a new snapshot.
        this.refetch().catch(() => {});
      },
      closed: (reason, options = {}) => {
        if (!current()) return;
        this.transport = null;
        this.log('close', { reason, opened, ...options });
        if (options.fatal) {
          this.stop();
          return;
        }
        // Only a stream that stayed up a while wipes the slate: one that opens and
        // drops at once, again and again, must still end up polling, at a slow pace.
        if (opened && Date.now() - openedAt >= HEALTHY_MS) {
          this.failures = 0;
          this.backoff.reset();
        }
        if (opened && options.clean) {
          this.connectSoon(0);
          return;
        }
        this.failures += 1;
        const wait = this.backoff.next();
        if (this.failures >= this.fallbackAfter) {
          if (this.mode !== 'polling') {
            this.setMode('polling');
            this.pollSoon(0);
          }
        } else if (this.mode !== 'polling') {
          this.setMode('reconnecting');
        }
        this.connectSoon(wait);
      },
    };
    const openTimer = setTimeout(() => {
      if (!current() || opened) return;
      this.transport?.close();
      handlers.closed('not open in time');
    }, this.openTimeoutMs);
    const opening = handlers.opened;
    handlers.opened = () => {
      clearTimeout(openTimer);
      opening();
    };
    try {
      const transport = await this.source.open(this.lastEventId, handlers);
      if (current()) this.transport = transport;
      else transport.close();
    } catch (error) {
      // No ticket (the API is down too): one more failed attempt.
      handlers.closed(`could not open: ${String(error)}`, {
        fatal: error instanceof ApiError && (error.status === 401 || error.status === 403),
      });
    }
  }

  /** @param {number} delayMs */
  pollSoon(delayMs) {
    clearTimeout(this.pollTimer);
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => this.pollOnce(), delayMs);
  }

  /** Something was just started here: while polling, ask now rather than at the idle pace. */
  pollSoonIfPolling() {
    if (this.mode === 'polling') this.pollSoon(0);
  }

  async pollOnce() {
    if (this.stopped || this.mode !== 'polling') return;
    try {
      const { seconds, lastEventId } = await this.source.poll();
      // The stream reopened meanwhile: it, not this poll, says where the feed stands.
      if (this.mode !== 'polling') return;
      const changed = this.pollSeconds !== seconds;
      this.pollSeconds = seconds;
      if (lastEventId !== null) this.lastEventId = Math.max(this.lastEventId ?? 0, lastEventId);
      this.log('poll', { seconds, lastEventId });
      if (changed) for (const listener of this.statusListeners) listener();
    } catch (error) {
      this.log('error', { during: 'poll', message: String(error) });
    }
    if (this.mode === 'polling') this.pollSoon(this.pollSeconds * 1000);
  }
}

/**
 * A tiny observable: `subscribe(listener)` calls the listener with the state now and
 * after every change. What React's `useSyncExternalStore` and most stores expect.
 * @template T
 */
export class Store {
  /** @param {T} state */
  constructor(state) {
    this.state = state;
    /** @type {Set<(state: T) => void>} */
    this.listeners = new Set();
  }

  getState() {
    return this.state;
  }

  /** @param {(state: T) => void} listener @returns {() => void} unsubscribe */
  subscribe(listener) {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  /** @param {T} state */
  set(state) {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }
}
