// @ts-check
/**
 * A channel's contents, kept current: the list (snapshot), then the channel's stream
 * from the snapshot's `X-Last-Event-ID` (SSE by default, or the WebSocket), merged by
 * each content's `version`, with the conditional status poll as the fallback.
 *
 *   import { ChannelFeed } from '/static/web/kit/channel.js';
 *   const feed = new ChannelFeed({ channelId });
 *   feed.subscribe((state) => render(state.contents));
 *   feed.onMode((mode) => showMode(mode, feed.pollSeconds));
 *   await feed.start();
 */
import {
  Api,
  ApiError,
  LiveConnection,
  Store,
  lastEventIdOf,
  openEventSource,
  openWebSocket,
  pollIntervalOf,
} from './live.js';

/**
 * @typedef {'idle' | 'generating' | 'complete' | 'error'} ContentStatus
 * @typedef {'uploading' | 'summarizing' | 'qa_generating' | 'completed' | 'failed'} ProcessingStatus
 * @typedef {{question: string, answer: string}} QAPair
 * @typedef {{summary?: string, qa_list?: QAPair[]}} AIGenMetadata
 * @typedef {{title?: string | null, description?: string | null, image_url?: string | null, site_name?: string | null}} LinkPreview
 */

/**
 * A content as the API answers it (`GET /api/contents/{id}`). Events and the batch
 * status carry a subset; `version` is always there and only ever rises.
 * @typedef {object} Content
 * @property {string} id
 * @property {string} [channel_id]
 * @property {string} [provider_id]
 * @property {string} [url]
 * @property {string} [img_url]
 * @property {string} [video_url]
 * @property {string} [title]
 * @property {string} [description]
 * @property {string} [category]
 * @property {ContentStatus} status
 * @property {ProcessingStatus} processing_status
 * @property {number} progress 0-100.
 * @property {string | null} [estimated_completion] ISO 8601.
 * @property {string | null} [error_message]
 * @property {AIGenMetadata | null} [ai_gen_metadata] The result: while generating, the partial
 *   result so far (the summary growing, the Q&A pairs done); complete once `completed`.
 * @property {LinkPreview | null} [link_preview_metadata]
 * @property {number} version
 * @property {string} [created_at]
 * @property {string} [updated_at]
 */

/**
 * @typedef {object} ChannelState
 * @property {Content[]} contents Newest first.
 * @property {import('./live.js').Mode} mode
 * @property {number} pollSeconds
 */

/**
 * @typedef {import('./live.js').KitOptions & {
 *   channelId: string,
 *   transport?: 'sse' | 'websocket',
 *   pageSize?: number,
 * }} ChannelFeedOptions
 */

const BATCH_LIMIT = 100;
/** At most this many contents new to the page are fetched one by one after a poll; more refetch the list. */
const DETAIL_LIMIT = 10;

/**
 * The fields that make a content's state at a version: a newer version replaces them
 * (a reset summary included), an older one never touches them. The rest (title, url,
 * description, link preview, created_at...) describe the content: any answer may fill
 * them in, and an empty value never replaces a known one.
 */
const STATE_FIELDS = new Set([
  'status', 'processing_status', 'progress', 'estimated_completion', 'error_message', 'ai_gen_metadata',
  'version', 'updated_at',
]);

const isEmpty = (/** @type {unknown} */ value) => value === undefined || value === null || value === '';

/**
 * `incoming` merged over `existing`; null if it changes nothing.
 * - A newer version replaces the state: a regenerated or retried content's partial or
 *   final result is replaced by the new run's (an event without `ai_gen_metadata`, or
 *   with a reset one, drops the old result), so two runs are never mixed. A failure
 *   keeps the partial result it stopped.
 * - The same version is the same state: it only fills in what was missing (an event
 *   carries the AI result, a batch status row does not; a detail carries the title).
 * - An older version (a detail fetched while partial events kept raising the version)
 *   never moves the state back, but still fills in the description it lacked.
 * - A known title (or url, description...) is never replaced by an empty one.
 * @param {Content | undefined} existing
 * @param {Partial<Content> & {id: string, version: number}} incoming
 * @returns {Content | null}
 */
export function mergeContent(existing, incoming) {
  if (!existing) return /** @type {Content} */ ({ ...incoming });
  const newer = incoming.version > existing.version;
  const older = incoming.version < existing.version;
  /** @type {Record<string, unknown>} */
  const merged = { ...existing };
  let changed = false;
  for (const [key, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    const known = merged[key];
    let take;
    if (STATE_FIELDS.has(key)) {
      take = newer || (!older && value !== null && (known === undefined || known === null));
    } else {
      take = isEmpty(known) ? !isEmpty(value) || known === undefined : newer && !isEmpty(value);
    }
    if (take && JSON.stringify(known) !== JSON.stringify(value)) {
      merged[key] = value;
      changed = true;
    }
  }
  // A failure keeps the partial result written before it (its event does not carry it,
  // the content's detail still has it); any other new state without it drops it.
  if (newer && !('ai_gen_metadata' in incoming) && merged.ai_gen_metadata && merged.status !== 'error') {
    merged.ai_gen_metadata = null;
  }
  return changed || newer ? /** @type {Content} */ (/** @type {unknown} */ (merged)) : null;
}

/** An event's data as content fields: `content_id` is the id, `timestamp` the update time. */
function fromEvent(/** @type {any} */ data) {
  const { content_id: id, timestamp, type: _type, ...fields } = data;
  return { ...fields, id, updated_at: timestamp };
}

export class ChannelFeed {
  /** @param {ChannelFeedOptions} options */
  constructor(options) {
    this.channelId = options.channelId;
    this.transport = options.transport ?? 'sse';
    this.pageSize = options.pageSize ?? 25;
    this.api = new Api(options);
    this.defaultPollSeconds = options.defaultPollSeconds ?? 5;
    /** @type {Map<string, Content>} */
    this.byId = new Map();
    /** @type {Set<string>} Contents being fetched one by one. */
    this.fetching = new Set();
    /**
     * Contents known only from events (which carry no title, link or text): left out
     * of `contents` until their detail arrives, so that no card is drawn "Untitled"
     * and then renamed. A failed fetch shows them as they are.
     * @type {Set<string>}
     */
    this.undescribed = new Set();
    /** @type {string | null} The status poll's ETag. */
    this.etag = null;
    /** @type {Store<ChannelState>} */
    this.store = new Store(/** @type {ChannelState} */ ({ contents: [], mode: 'connecting', pollSeconds: this.defaultPollSeconds }));
    this.connection = new LiveConnection(
      {
        snapshot: () => this.snapshot(),
        open: (fromId, on) => this.open(fromId, on),
        apply: (_id, _type, data) => this.applyEvent(data),
        poll: () => this.poll(),
      },
      options,
    );
    this.connection.onStatus(() => this.publish());
  }

  get mode() {
    return this.connection.mode;
  }

  get pollSeconds() {
    return this.connection.pollSeconds;
  }

  /** @param {(state: ChannelState) => void} listener @returns {() => void} */
  subscribe(listener) {
    return this.store.subscribe(listener);
  }

  /** @param {(mode: import('./live.js').Mode) => void} listener @returns {() => void} */
  onMode(listener) {
    return this.connection.onMode(listener);
  }

  start() {
    return this.connection.start();
  }

  stop() {
    this.connection.stop();
  }

  /** @param {string} id */
  get(id) {
    return this.byId.get(id);
  }

  publish() {
    const time = (/** @type {string | undefined} */ iso) => (iso ? Date.parse(iso) : Number.MAX_SAFE_INTEGER);
    const contents = [...this.byId.values()]
      .filter((c) => !this.undescribed.has(c.id))
      .sort((a, b) => time(b.created_at) - time(a.created_at));
    this.store.set({ contents, mode: this.connection.mode, pollSeconds: this.connection.pollSeconds });
  }

  /**
   * @param {Array<Partial<Content> & {id: string, version: number}>} rows
   * @returns {boolean} whether anything changed
   */
  mergeAll(rows) {
    let changed = false;
    for (const row of rows) {
      const existing = this.byId.get(row.id);
      const merged = mergeContent(existing, row);
      // A row with `created_at` is a whole content (list, detail, submit answer).
      if ('created_at' in row && this.undescribed.delete(row.id)) changed = true;
      if (merged) {
        this.byId.set(row.id, merged);
        changed = true;
        // `apply`: a new version; `fill`: the same or an older version, with fields it lacked.
        const kind = existing && existing.version >= row.version ? 'fill' : 'apply';
        this.connection.log(kind, { id: row.id, version: row.version, status: merged.status });
      } else {
        this.connection.log('stale', { id: row.id, version: row.version });
      }
    }
    if (changed) this.publish();
    return changed;
  }

  /** @returns {Promise<number | null>} */
  async snapshot() {
    const { headers, body } = await this.api.get(
      `/api/contents/channel/${this.channelId}?page_size=${this.pageSize}`,
    );
    this.mergeAll(body.contents);
    return lastEventIdOf(headers);
  }

  /**
   * @param {number | null} fromId
   * @param {import('./live.js').TransportHandlers} on
   */
  async open(fromId, on) {
    if (this.transport === 'websocket') {
      const url = await this.api.streamUrl(`/api/contents/${this.channelId}/ws`, {}, 'ws');
      /** @type {Record<string, unknown>} */
      const subscribe = { type: 'subscribe', channel_id: this.channelId };
      if (fromId !== null) subscribe.since = fromId;
      return openWebSocket(url, subscribe, on);
    }
    const url = await this.api.streamUrl(`/api/contents/${this.channelId}/events`, { last_event_id: fromId });
    return openEventSource(url, on, !this.api.currentToken() && Boolean(this.api.baseUrl));
  }

  /** @param {any} data */
  applyEvent(data) {
    const row = fromEvent(data);
    if (!this.byId.has(row.id)) {
      // Someone else's submission, or one's own whose POST has not answered yet: the
      // event has its status, the detail the rest (held back until then).
      this.undescribed.add(row.id);
      this.fetchOne(row.id);
    }
    this.mergeAll([row]);
    const merged = this.byId.get(row.id);
    if (merged && merged.status === 'complete' && !merged.ai_gen_metadata) this.fetchOne(row.id);
  }

  /** @param {string} id */
  async fetchOne(id) {
    if (this.fetching.has(id)) return;
    this.fetching.add(id);
    try {
      const { body } = await this.api.get(`/api/contents/${id}`);
      this.mergeAll([body]);
    } catch (error) {
      this.connection.log('error', { during: 'fetch', id, message: String(error) });
      // Shown as the events have it rather than not at all.
      if (this.undescribed.delete(id)) this.publish();
    } finally {
      this.fetching.delete(id);
    }
  }

  /**
   * One conditional poll: the channel's status with `If-None-Match` (a 304 costs no
   * body); when it changed, the batch status of the contents on the page, and the
   * details of contents new to it or newly complete.
   * @returns {Promise<{seconds: number, lastEventId: number | null}>}
   */
  async poll() {
    /** @type {Record<string, string>} */
    const headers = this.etag ? { 'If-None-Match': this.etag } : {};
    const status = await this.api.get(`/api/contents/${this.channelId}/status`, headers, [304]);
    const seconds = pollIntervalOf(status.headers, this.defaultPollSeconds);
    const head = lastEventIdOf(status.headers);
    if (status.status === 304) return { seconds, lastEventId: head };
    const body = status.body;
    const listed = [...body.processing_contents, ...body.completed_contents, ...body.failed_contents].map(
      (/** @type {{id: string}} */ row) => row.id,
    );
    const known = [...this.byId.keys()];
    for (let start = 0; start < known.length; start += BATCH_LIMIT) {
      const answer = await this.api.post('/api/contents/status/batch', {
        content_ids: known.slice(start, start + BATCH_LIMIT),
      });
      /** @type {Content[]} */
      const rows = answer.body.statuses;
      // A content newly complete is shown with its result, not before, and one still
      // generating with its partial result (the rows carry none): its detail (at least
      // as new as the row) replaces the row.
      const done = rows.filter((row) => (row.status === 'complete' || row.status === 'generating')
        && row.version > (this.byId.get(row.id)?.version ?? 0));
      const details = await Promise.all(done.map((row) => this.api.get(`/api/contents/${row.id}`).then(
        (answer) => answer.body, () => row,
      )));
      const detailed = new Map(details.map((detail) => [detail.id, detail]));
      this.mergeAll(rows.map((row) => detailed.get(row.id) ?? row));
    }
    const unknown = listed.filter((id) => !this.byId.has(id));
    if (unknown.length > DETAIL_LIMIT) await this.snapshot();
    else await Promise.all(unknown.map((id) => this.fetchOne(id)));
    const missingResult = [...this.byId.values()].filter((c) => c.status === 'complete' && !c.ai_gen_metadata);
    await Promise.all(missingResult.map((c) => this.fetchOne(c.id)));
    // Kept only after everything above: the state is now at least as new as `head`.
    this.etag = status.headers.get('ETag');
    return { seconds, lastEventId: head };
  }

  /**
   * Submit a link (`{url}`), an image or video URL, or a text (`{title, description}`).
   * Retried safely: the same `idempotencyKey` answers the first result.
   * @param {{url?: string, img_url?: string, video_url?: string, title?: string, description?: string, category?: string}} fields
   * @param {{idempotencyKey?: string}} [options]
   * @returns {Promise<Content>}
   */
  async submit(fields, options = {}) {
    const key = options.idempotencyKey ?? crypto.randomUUID();
    const { body } = await this.api.post(
      '/api/contents', { channel_id: this.channelId, ...fields }, { 'Idempotency-Key': key },
    );
    this.mergeAll([body]);
    this.connection.pollSoonIfPolling();
    return /** @type {Content} */ (this.byId.get(body.id));
  }

  /**
   * Run the AI pipeline again: retry a failed content, regenerate a complete one.
   * @param {string} contentId
   * @returns {Promise<Content>}
   */
  async retry(contentId) {
    const { body } = await this.api.post(`/api/contents/${contentId}/regenerate`, undefined);
    this.mergeAll([body]);
    this.connection.pollSoonIfPolling();
    return /** @type {Content} */ (this.byId.get(contentId));
  }
}

export { ApiError };
