// @ts-check
/**
 * The studio: upload a video, start glitch and remix jobs, watch their progress
 * live, cancel, play the result; the credit balance. Jobs and credits come from the
 * user feed (shared with the bell), videos from the REST API.
 */
import { Api } from '../kit/live.js';
import { config, describe, el, fromNow, safeUrl, t } from './common.js';
import { me } from './me.js';

/** @typedef {import('../kit/user.js').AIJob} AIJob */
/** @typedef {{id: string, owner_id: string, title: string, file_url: string, thumbnail_url: string | null, duration_seconds: number}} Video */

const api = new Api();
const videosNode = /** @type {HTMLElement} */ (document.getElementById('videos'));
const jobsNode = /** @type {HTMLElement} */ (document.getElementById('jobs'));
const creditsNode = /** @type {HTMLElement} */ (document.getElementById('credits'));
const form = /** @type {HTMLFormElement} */ (document.getElementById('upload-form'));
const formStatus = /** @type {HTMLElement} */ (form.querySelector('.form-status'));
const remixModes = /** @type {HTMLTemplateElement} */ (document.getElementById('remix-modes'));

/** @type {Map<string, Video>} */
const videos = new Map();
/** @type {Record<string, number>} */
let costs = {};

function say(/** @type {string} */ text) {
  formStatus.textContent = text;
  formStatus.hidden = !text;
}

/** @param {'glitch' | 'remix'} kind @param {string} videoId @param {Record<string, unknown>} params */
async function start(kind, videoId, params) {
  say('');
  try {
    await me.createJob({ kind, video_id: videoId, params });
  } catch (error) {
    say(t('job_failed_to_start', { detail: describe(error) }));
  }
}

/** @param {Video} video */
function videoItem(video) {
  const mode = /** @type {HTMLSelectElement} */ (el('select', { className: 'remix-mode', ariaLabel: t('kind_remix') }));
  mode.append(remixModes.content.cloneNode(true));
  return el('li', { className: 'video', dataset: { videoId: video.id } },
    video.thumbnail_url ? el('img', { src: video.thumbnail_url, alt: '', width: 96, height: 54 }) : null,
    el('span', { className: 'video-title' }, video.title),
    el('span', { className: 'muted' }, `${video.duration_seconds.toFixed(1)} s`),
    el('span', { className: 'actions' },
      el('button', { type: 'button', className: 'start-glitch', onclick: () => start('glitch', video.id, {}) },
        `${t('kind_glitch')} · ${t('cost', { cost: costs.glitch ?? '?' })}`),
      mode,
      el('button', { type: 'button', className: 'start-remix', onclick: () => start('remix', video.id, { mode: mode.value }) },
        `${t('kind_remix')} · ${t('cost', { cost: costs.remix ?? '?' })}`)));
}

function renderVideos() {
  const items = [...videos.values()].map(videoItem);
  videosNode.replaceChildren(...(items.length ? items : [el('li', { className: 'muted' }, t('no_videos'))]));
}

/** @param {AIJob} job */
function statusLabel(job) {
  if (job.status === 'failed' && job.error === 'Cancelled') return t('job_cancelled');
  return t(`job_${job.status}`);
}

/** @param {AIJob} job */
function jobItem(job) {
  const existing = /** @type {HTMLElement | null} */ (jobsNode.querySelector(`[data-job-id="${CSS.escape(job.id)}"]`));
  const video = job.video_id ? videos.get(job.video_id) : undefined;
  const key = JSON.stringify([job.status, job.progress, job.result_url, job.kind, job.queue_position, video?.title]);
  // Drawn again only when something shown changed: a playing result keeps playing.
  if (existing && existing.dataset.key === key) return existing;
  const node = existing ?? el('li', { className: 'job', dataset: { jobId: job.id } });
  node.dataset.key = key;
  node.dataset.status = job.status;
  const active = job.status === 'queued' || job.status === 'processing';
  const when = active ? fromNow(job.estimated_completion) : null;
  const parts = [
    el('div', { className: 'job-head' },
      el('span', { className: `badge job-${job.status}` }, statusLabel(job)),
      el('strong', {}, job.kind ? t(`kind_${job.kind}`) : ''),
      video ? el('span', { className: 'muted' }, t('video_of', { title: video.title })) : null,
      active ? el('button', { type: 'button', className: 'cancel', onclick: () => me.cancelJob(job.id).catch(() => {}) }, t('cancel')) : null),
    el('div', { className: 'progress-row' },
      el('progress', { max: 100, value: job.progress ?? 0 }),
      el('span', { className: 'percent' }, `${job.progress ?? 0}%`)),
    job.status === 'queued' && job.queue_position ? el('p', { className: 'muted' }, t('queue_position', { position: job.queue_position })) : null,
    when ? el('p', { className: 'eta' }, t('eta', { when })) : null,
    job.status === 'failed' && job.error !== 'Cancelled' ? el('p', { className: 'error-message' }, job.error ?? '') : null,
  ];
  const shown = parts.filter((part) => part !== null);
  const resultUrl = job.status === 'completed' ? job.result_url : null;
  // The result's player is kept in place when the card is drawn again for another
  // reason (its video's title arriving, say): a media element taken out of the page,
  // even for a moment, stops playing. (`el` wrote its src as an absolute URL; the API's
  // result_url is a path.)
  const player = /** @type {HTMLVideoElement | null} */ (node.querySelector(':scope > video.result'));
  if (player && resultUrl && player.getAttribute('src') === safeUrl(resultUrl)) {
    for (const child of [...node.children]) if (child !== player) child.remove();
    player.before(...shown);
    return node;
  }
  node.replaceChildren(...shown, ...(resultUrl
    ? [el('video', { className: 'result', src: resultUrl, controls: true, preload: 'metadata', muted: true, playsInline: true })]
    : []));
  return node;
}

me.subscribe((state) => {
  if (state.credits) {
    creditsNode.dataset.balance = String(state.credits.balance);
    creditsNode.textContent = t('credits', { balance: state.credits.balance });
    if (JSON.stringify(costs) !== JSON.stringify(state.credits.costs)) {
      costs = state.credits.costs;
      renderVideos();
    }
  }
  const items = state.jobs.map(jobItem);
  items.forEach((node, index) => {
    if (jobsNode.children[index] !== node) jobsNode.insertBefore(node, jobsNode.children[index] ?? null);
  });
  while (jobsNode.children.length > items.length) jobsNode.lastElementChild?.remove();
  if (!items.length) jobsNode.replaceChildren(el('li', { className: 'muted empty' }, t('no_jobs')));
});

async function loadVideos() {
  const { body } = await api.get('/v1/videos/feed?page_size=100');
  for (const video of body.results) if (video.owner_id === config.userId) videos.set(video.id, video);
  renderVideos();
  me.publish(); // job cards name their videos
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const button = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));
  button.disabled = true;
  say(t('uploading'));
  try {
    const { body } = await api.request('POST', '/v1/videos', { form: data, headers: { 'Idempotency-Key': crypto.randomUUID() } });
    const rest = new Map(videos);
    videos.clear();
    videos.set(body.id, body);
    for (const [id, video] of rest) videos.set(id, video);
    renderVideos();
    form.reset();
    say('');
  } catch (error) {
    say(t('upload_failed', { detail: describe(error) }));
  } finally {
    button.disabled = false;
  }
});

loadVideos().catch((error) => say(describe(error)));
