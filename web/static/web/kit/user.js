// @ts-check
/**
 * The signed-in user's own stream, kept current: AI jobs (progress, result,
 * cancel), notifications (the list, the unread count, mark all read) and the credit
 * balance. Snapshot (`GET /v1/notifications/`, `GET /v1/ai/jobs`, `GET /v1/credits`),
 * then `WS /v1/ws` subscribed with `since` = the snapshots' `X-Last-Event-ID`;
 * fallback: the batch status of the unfinished jobs at the server's
 * `X-Poll-Interval`, and the snapshot again now and then.
 *
 *   import { UserFeed } from '/static/web/kit/user.js';
 *   const me = new UserFeed();
 *   me.subscribe(({ jobs, notifications, unreadCount, credits }) => render(...));
 *   await me.start();
 */
import { Api, LiveConnection, Store, lastEventIdOf, openWebSocket, pollIntervalOf } from './live.js';

/**
 * @typedef {'queued' | 'processing' | 'completed' | 'failed'} JobStatus
 */

/**
 * An AI job as `GET /v1/ai/jobs/{id}` answers it; events and the batch status carry
 * `{id, status, progress, result_url, error}` (events also `version`).
 * @typedef {object} AIJob
 * @property {string} id
 * @property {'glitch' | 'remix'} [kind]
 * @property {string} [video_id]
 * @property {Record<string, unknown>} [params]
 * @property {JobStatus} status
 * @property {number} progress
 * @property {string | null} result_url
 * @property {string | null} error A cancelled job is `failed` with error "Cancelled".
 * @property {number} [cost]
 * @property {boolean} [refunded]
 * @property {number | null} [queue_position]
 * @property {string | null} [estimated_completion]
 * @property {number} [version]
 * @property {string} [created_at]
 */

/**
 * @typedef {object} Notification
 * @property {string} id
 * @property {string} type `like`, `comment`, `remix`, `ai_job_completed`, `ai_job_failed`, `content_complete`, `content_error`.
 * @property {string | null} actor_id
 * @property {Record<string, any>} data What it is about; `count` groups a burst (likes).
 * @property {boolean} is_read
 * @property {string} created_at
 */

/**
 * @typedef {object} UserState
 * @property {AIJob[]} jobs Newest first.
 * @property {Notification[]} notifications Newest first.
 * @property {number} unreadCount
 * @property {{balance: number, costs: Record<string, number>} | null} credits
 * @property {import('./live.js').Mode} mode
 * @property {number} pollSeconds
 */

/**
 * @typedef {import('./live.js').KitOptions & {
 *   snapshotEverySeconds?: number,
 * }} UserFeedOptions
 */

const RANK = { queued: 0, processing: 1, completed: 2, failed: 2 };

/** Milliseconds of an ISO 8601 time (events write `+00:00`, the REST answers `Z`: compare times, not strings). */
function time(/** @type {string | undefined} */ iso) {
  return iso ? Date.parse(iso) : 0;
}
const BATCH_LIMIT = 100;

/**
 * Whether `incoming` is newer than `existing`. A job only moves forward: queued, then
 * processing with rising progress, then completed or failed; so (status, progress)
 * orders its states, which lets the batch status (which has no `version`) merge with
 * events (which do) without ever moving a job back.
 * @param {AIJob | undefined} existing
 * @param {Partial<AIJob> & {id: string, status: JobStatus}} incoming
 */
export function jobIsNewer(existing, incoming) {
  if (!existing) return true;
  const a = [RANK[existing.status], existing.progress ?? 0, existing.version ?? 0];
  const b = [RANK[incoming.status], incoming.progress ?? 0, incoming.version ?? a[2]];
  for (let i = 0; i < 3; i += 1) if (a[i] !== b[i]) return b[i] > a[i];
  return false;
}

export class UserFeed {
  /** @param {UserFeedOptions} [options] */
  constructor(options = {}) {
    this.api = new Api(options);
    this.snapshotEverySeconds = options.snapshotEverySeconds ?? 15;
    /** @type {Map<string, AIJob>} */
    this.jobs = new Map();
    /** @type {Map<string, Notification>} */
    this.notifications = new Map();
    this.unreadCount = 0;
    /** The event id the unread count is as of: an older answer never replaces it. */
    this.unreadAsOf = -1;
    /** @type {UserState['credits']} */
    this.credits = null;
    this.lastSnapshotAt = 0;
    /** @type {Set<string>} */
    this.fetching = new Set();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.creditsTimer = undefined;
    /** @type {Store<UserState>} */
    this.store = new Store(this.state());
    this.connection = new LiveConnection(
      {
        snapshot: () => this.snapshot(),
        open: (fromId, on) => this.open(fromId, on),
        apply: (id, type, data) => this.applyEvent(id, type, data),
        poll: () => this.poll(),
      },
      options,
    );
    this.connection.onStatus(() => this.publish());
  }

  get mode() {
    return this.connection.mode;
  }

  /** @returns {UserState} */
  state() {
    const newest = (/** @type {{created_at?: string}} */ a, /** @type {{created_at?: string}} */ b) =>
      time(b.created_at) - time(a.created_at);
    return {
      jobs: [...this.jobs.values()].sort(newest),
      notifications: [...this.notifications.values()].sort(newest),
      unreadCount: this.unreadCount,
      credits: this.credits,
      mode: this.connection?.mode ?? 'connecting',
      pollSeconds: this.connection?.pollSeconds ?? 5,
    };
  }

  publish() {
    this.store.set(this.state());
  }

  /** @param {(state: UserState) => void} listener @returns {() => void} */
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
    clearTimeout(this.creditsTimer);
    this.connection.stop();
  }

  /**
   * @param {Partial<AIJob> & {id: string, status: JobStatus}} row
   * @returns {boolean} whether it changed the job
   */
  mergeJob(row) {
    const existing = this.jobs.get(row.id);
    if (!jobIsNewer(existing, row)) {
      // Same state: fill in what the other source lacked (kind, video, created_at).
      if (existing && Object.keys(row).some((k) => !(k in existing))) {
        this.jobs.set(row.id, { ...row, ...existing });
        return true;
      }
      return false;
    }
    if (existing && existing.status !== row.status) this.refreshCreditsSoon();
    this.jobs.set(row.id, /** @type {AIJob} */ ({ ...existing, ...row }));
    return true;
  }

  /** @param {Notification} notification */
  mergeNotification(notification) {
    const existing = this.notifications.get(notification.id);
    this.notifications.set(notification.id, existing
      ? {
        ...existing,
        ...notification,
        // Read never becomes unread; a group's count and time only grow.
        is_read: existing.is_read || notification.is_read,
        created_at: time(existing.created_at) > time(notification.created_at) ? existing.created_at : notification.created_at,
      }
      : notification);
  }

  /** @param {number} count @param {number} asOf */
  setUnread(count, asOf) {
    if (asOf < this.unreadAsOf) return;
    this.unreadAsOf = asOf;
    this.unreadCount = count;
  }

  /** @returns {Promise<number | null>} */
  async snapshot() {
    const [notifications, jobs, credits] = await Promise.all([
      this.api.get('/v1/notifications/'),
      this.api.get('/v1/ai/jobs'),
      this.api.get('/v1/credits'),
    ]);
    const heads = [lastEventIdOf(notifications.headers), lastEventIdOf(jobs.headers)].filter((h) => h !== null);
    // The older of the two: the stream replays from there, and merging makes repeats harmless.
    const head = heads.length ? Math.min(.../** @type {number[]} */ (heads)) : null;
    for (const notification of notifications.body.results) this.mergeNotification(notification);
    this.setUnread(notifications.body.unread_count, head ?? 0);
    for (const job of jobs.body.results) this.mergeJob(job);
    this.credits = credits.body;
    this.lastSnapshotAt = Date.now();
    this.publish();
    return head;
  }

  /**
   * @param {number | null} fromId
   * @param {import('./live.js').TransportHandlers} on
   */
  async open(fromId, on) {
    const url = await this.api.streamUrl('/v1/ws', {}, 'ws');
    /** @type {Record<string, unknown>} */
    const subscribe = { type: 'subscribe' };
    if (fromId !== null) subscribe.since = fromId;
    return openWebSocket(url, subscribe, on);
  }

  /** @param {number} id @param {string} type @param {any} data */
  applyEvent(id, type, data) {
    if (type === 'ai_job_update') {
      const isNew = !this.jobs.has(data.id);
      if (this.mergeJob(data)) this.publish();
      if (isNew) this.fetchJob(data.id);
    } else if (type === 'notification') {
      if (data.type === 'read') {
        if (Array.isArray(data.read_ids)) {
          for (const readId of data.read_ids) {
            const n = this.notifications.get(readId);
            if (n) this.notifications.set(readId, { ...n, is_read: true });
          }
        } else if (data.unread_count === 0) {
          for (const [key, n] of this.notifications) this.notifications.set(key, { ...n, is_read: true });
        } else {
          // "Everything before a time" elsewhere: which ones, the list says.
          this.refetchSoon();
        }
      } else {
        const { unread_count: _count, ...notification } = data;
        this.mergeNotification(notification);
      }
      if (typeof data.unread_count === 'number') this.setUnread(data.unread_count, id);
      this.publish();
    }
  }

  refetchSoon() {
    this.connection.refetch().catch(() => {});
  }

  /** @param {string} id */
  async fetchJob(id) {
    if (this.fetching.has(id)) return;
    this.fetching.add(id);
    try {
      const { body } = await this.api.get(`/v1/ai/jobs/${id}`);
      if (this.mergeJob(body)) this.publish();
    } catch (error) {
      this.connection.log('error', { during: 'fetch job', id, message: String(error) });
    } finally {
      this.fetching.delete(id);
    }
  }

  /** Credits move when a job starts (charged) or fails (refunded); no event carries them. */
  refreshCreditsSoon() {
    clearTimeout(this.creditsTimer);
    this.creditsTimer = setTimeout(async () => {
      try {
        this.credits = (await this.api.get('/v1/credits')).body;
        this.publish();
      } catch {
        /* the next change tries again */
      }
    }, 200);
  }

  /**
   * One poll: the batch status of the unfinished jobs (at the server's
   * `X-Poll-Interval`), and the whole snapshot every `snapshotEverySeconds` (new
   * notifications and the unread count; the stream may reopen from its event id).
   * @returns {Promise<{seconds: number, lastEventId: number | null}>}
   */
  async poll() {
    let seconds = this.snapshotEverySeconds;
    const active = [...this.jobs.values()].filter((job) => job.status === 'queued' || job.status === 'processing');
    for (let start = 0; start < active.length; start += BATCH_LIMIT) {
      const answer = await this.api.post('/v1/ai/jobs/batch-status', {
        job_ids: active.slice(start, start + BATCH_LIMIT).map((job) => job.id),
      });
      seconds = Math.min(seconds, pollIntervalOf(answer.headers, seconds));
      let changed = false;
      for (const [id, row] of Object.entries(answer.body.jobs)) changed = this.mergeJob({ ...row, id }) || changed;
      if (changed) this.publish();
    }
    if (Date.now() - this.lastSnapshotAt >= this.snapshotEverySeconds * 1000) {
      return { seconds, lastEventId: await this.snapshot() };
    }
    return { seconds, lastEventId: null };
  }

  /**
   * Queue a glitch or remix of a video (202, `queued`); its progress arrives live.
   * @param {{kind: 'glitch' | 'remix', video_id: string, params?: Record<string, unknown>}} job
   * @param {{idempotencyKey?: string}} [options]
   * @returns {Promise<AIJob>}
   */
  async createJob(job, options = {}) {
    const { body } = await this.api.post('/v1/ai/jobs', job, { 'Idempotency-Key': options.idempotencyKey ?? crypto.randomUUID() });
    this.mergeJob(body);
    this.publish();
    this.connection.pollSoonIfPolling();
    return body;
  }

  /** @param {string} jobId @returns {Promise<AIJob>} */
  async cancelJob(jobId) {
    const { body } = await this.api.post(`/v1/ai/jobs/${jobId}/cancel`, undefined);
    this.mergeJob(body);
    this.publish();
    return body;
  }

  /**
   * Mark read every notification up to the newest one shown, not `all`: one that
   * arrives between the look and the click stays unread.
   * @returns {Promise<number>} how many were marked
   */
  async markAllRead() {
    const newest = this.state().notifications[0];
    if (!newest) return 0;
    const { body } = await this.api.post('/v1/notifications/batch-mark-read', { before: newest.created_at });
    for (const [key, n] of this.notifications) {
      if (time(n.created_at) <= time(newest.created_at)) this.notifications.set(key, { ...n, is_read: true });
    }
    if (typeof body.unread_count === 'number') this.setUnread(body.unread_count, this.connection.lastEventId ?? 0);
    this.publish();
    return body.marked_count;
  }
}
