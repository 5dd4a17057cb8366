// @ts-check
/**
 * The channel page: submit a link or a text; one card per content, drawn by its
 * `status` (waiting; generating with stage, progress and ETA; complete with summary
 * and Q&A; error with the message and a retry button), kept current by the kit.
 */
import { ChannelFeed } from '../kit/channel.js';
import { config, describe, el, etaText, expose, safeUrl, showMode, t } from './common.js';
import './me.js';

/** @typedef {import('../kit/channel.js').Content} Content */

const cards = /** @type {HTMLElement} */ (document.getElementById('cards'));
const modeNode = /** @type {HTMLElement} */ (document.getElementById('channel-mode'));
const form = /** @type {HTMLFormElement} */ (document.getElementById('submit-form'));
const formError = /** @type {HTMLElement} */ (form.querySelector('.form-error'));

const log = /** @type {import('../kit/live.js').LogEntry[]} */ ([]);
const feed = new ChannelFeed({
  channelId: config.channelId,
  transport: config.transport,
  onLog: (entry) => { log.push(entry); if (log.length > 1000) log.shift(); },
});
expose('channel', feed);
expose('channelLog', log);

/** @param {Content} c */
function title(c) {
  return c.title || c.link_preview_metadata?.title || c.url || c.img_url || c.video_url || t('untitled');
}

/** @param {Content} c */
function source(c) {
  const url = c.url || c.img_url || c.video_url;
  if (!url) return el('span', { className: 'source muted' }, t('text_content'));
  // Not http(s): shown, never linked.
  if (!safeUrl(url)) return el('span', { className: 'source muted' }, url);
  let host = url;
  try {
    host = new URL(url).host;
  } catch {
    /* shown as given */
  }
  const site = c.link_preview_metadata?.site_name;
  return el('a', { className: 'source', href: url, rel: 'noopener noreferrer', target: '_blank' }, site || host);
}

/** The ETA line (none without an estimate); refreshed every second by the ticker below. @param {Content} c */
function eta(c) {
  if (!c.estimated_completion) return null;
  return el('p', { className: 'eta', dataset: { eta: c.estimated_completion } }, etaText(c.estimated_completion));
}

/** @param {Content} c */
function progress(c) {
  return el('div', { className: 'progress-row' },
    el('progress', { max: 100, value: c.progress ?? 0 }),
    el('span', { className: 'percent' }, `${c.progress ?? 0}%`));
}

/**
 * The result: the summary and the Q&A, complete, or while generating the part written
 * so far (the summary growing, the pairs appearing), marked as partial.
 * @param {Content} c
 * @param {boolean} partial
 */
function result(c, partial) {
  const meta = c.ai_gen_metadata ?? {};
  const qa = meta.qa_list ?? [];
  const extra = partial ? ' partial' : '';
  return [
    partial && !meta.summary ? null
      : el('section', { className: `summary${extra}` }, el('h4', {}, t('summary')), el('p', {}, meta.summary ?? '')),
    qa.length
      ? el('section', { className: `qa${extra}` }, el('h4', {}, t('qa')),
        el('dl', {}, ...qa.flatMap((pair) => [el('dt', {}, pair.question), el('dd', {}, pair.answer)])))
      : null,
  ];
}

/** @param {Content} c */
function body(c) {
  switch (c.status) {
    case 'idle':
      return [
        el('p', { className: 'note' }, t('waiting_note')),
        el('p', { className: 'stage' }, t(`stage_${c.processing_status}`)),
        progress(c),
        eta(c),
      ];
    case 'generating':
      return [
        el('p', { className: 'note' }, t('generating_note')),
        el('p', { className: 'stage' }, t(`stage_${c.processing_status}`)),
        progress(c),
        eta(c),
        ...result(c, true),
      ];
    case 'complete':
      return result(c, false);
    case 'error':
      // What was written before the failure stays below its message.
      return [
        el('p', { className: 'error-message' }, c.error_message ?? ''),
        el('button', { type: 'button', className: 'retry', onclick: () => retry(c.id) }, t('retry')),
        ...result(c, true),
      ];
    default:
      return [];
  }
}

/**
 * Everything a card shows of its content. A card is drawn again when this changes,
 * whatever the version: details (the title, the link) arrive at the same version as
 * the event that first showed the content, and partial results at a new one each.
 * @param {Content} c
 */
function shown(c) {
  return JSON.stringify([
    c.status, c.processing_status, c.progress, c.estimated_completion, c.error_message, c.ai_gen_metadata,
    title(c), c.url, c.img_url, c.video_url, c.link_preview_metadata?.site_name,
  ]);
}

/** What each card was last drawn from (`shown`). @type {WeakMap<HTMLElement, string>} */
const drawn = new WeakMap();

/** A card, drawn again only when something it shows changed. @param {Content} c */
function card(c) {
  const existing = /** @type {HTMLElement | null} */ (cards.querySelector(`[data-content-id="${CSS.escape(c.id)}"]`));
  const key = shown(c);
  if (existing && drawn.get(existing) === key) {
    existing.dataset.version = String(c.version);
    return existing;
  }
  const node = existing ?? el('article', { className: 'card', dataset: { contentId: c.id } });
  drawn.set(node, key);
  node.dataset.status = c.status;
  node.dataset.stage = c.processing_status;
  node.dataset.version = String(c.version);
  // The cards are a polite live region: a result still growing is announced once done,
  // not at each partial.
  node.setAttribute('aria-busy', String(c.status === 'generating'));
  node.replaceChildren(
    el('header', {},
      el('span', { className: `badge status-${c.status}` }, t(`status_${c.status}`)),
      el('h3', { className: 'card-title' }, title(c)),
      source(c)),
    ...body(c).filter((part) => part !== null),
  );
  return node;
}

feed.subscribe((state) => {
  const nodes = state.contents.map(card);
  // Keep nodes in place where the order holds (no flicker, no lost focus).
  nodes.forEach((node, index) => {
    if (cards.children[index] !== node) cards.insertBefore(node, cards.children[index] ?? null);
  });
  while (cards.children.length > nodes.length) cards.lastElementChild?.remove();
  if (!nodes.length) cards.replaceChildren(el('p', { className: 'muted empty' }, t('empty_channel')));
  showMode(modeNode, state.mode, state.pollSeconds);
});

setInterval(() => {
  for (const node of cards.querySelectorAll('.eta')) {
    node.textContent = etaText(/** @type {HTMLElement} */ (node).dataset.eta);
  }
}, 1000);

/** @param {string} id */
async function retry(id) {
  try {
    await feed.retry(id);
  } catch (error) {
    formError.textContent = t('retry_failed', { detail: describe(error) });
    formError.hidden = false;
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const url = String(data.get('url') ?? '').trim();
  const fields = url
    ? { url }
    : { title: String(data.get('title') ?? '').trim(), description: String(data.get('description') ?? '').trim() };
  const button = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));
  button.disabled = true;
  formError.hidden = true;
  try {
    await feed.submit(fields);
    form.reset();
  } catch (error) {
    formError.textContent = t('submit_failed', { detail: describe(error) });
    formError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

feed.start().catch((error) => {
  formError.textContent = describe(error);
  formError.hidden = false;
});
