// @ts-check
/**
 * What the pages share: their config and translated strings (from json_script
 * elements the server rendered), and DOM helpers that only ever put server data in
 * text nodes and vetted attributes, never in HTML.
 */

/** @param {string} id */
function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent ?? '{}') : {};
}

/** @type {Record<string, any>} */
export const config = readJson('page-config');
/** @type {Record<string, string>} */
export const strings = readJson('strings');
export const lang = document.documentElement.lang || 'en';

/**
 * A translated string with its `%(name)s` placeholders filled (as text).
 * @param {string} key
 * @param {Record<string, string | number | null | undefined>} [params]
 */
export function t(key, params = {}) {
  return (strings[key] ?? key).replace(/%\((\w+)\)s/g, (_, name) => String(params[name] ?? ''));
}

/**
 * An element: `props` sets properties (className, value, type...) or `data-*`
 * through `dataset`; children are nodes or strings (text nodes).
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'href' || key === 'src') {
      const safe = safeUrl(String(value));
      if (safe) node.setAttribute(key, safe);
    } else if (key in node) /** @type {any} */ (node)[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/**
 * A URL safe to link to or load: http(s), or a path on this site. `javascript:`,
 * `data:` and the rest are refused.
 * @param {string} url
 * @returns {string | null}
 */
export function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}

const relative = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' });

/**
 * "in 12 seconds" / "12초 후", or null once the time has passed.
 * @param {string | null | undefined} iso
 */
export function fromNow(iso) {
  if (!iso) return null;
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) return null;
  return seconds < 90 ? relative.format(seconds, 'second') : relative.format(Math.round(seconds / 60), 'minute');
}

/** Past its estimate by this much, a wait is said to be taking longer, not "almost done". */
const LATE_SECONDS = 10;

/**
 * The ETA line of something in progress: when, almost done, or later than expected.
 * @param {string | null | undefined} iso
 */
export function etaText(iso) {
  const when = fromNow(iso);
  if (when) return t('eta', { when });
  if (iso && Date.now() - Date.parse(iso) > LATE_SECONDS * 1000) return t('eta_late');
  return t('eta_soon');
}

/**
 * Show a feed's mode on an indicator (`data-mode` for styling and tests).
 * @param {HTMLElement} node
 * @param {string} mode
 * @param {number} pollSeconds
 */
export function showMode(node, mode, pollSeconds) {
  node.dataset.mode = mode;
  node.textContent = t(`mode_${mode}`, { seconds: pollSeconds });
}

/** The message of an API error, for a person. @param {unknown} error */
export function describe(error) {
  const problem = /** @type {any} */ (error)?.problem;
  const first = problem?.errors?.[0];
  if (first?.detail) return first.attr ? `${first.attr}: ${first.detail}` : first.detail;
  return /** @type {Error} */ (error)?.message ?? String(error);
}

/** A handle for debugging and the browser tests: `window.aistatus.channel`, `.user`. */
export function expose(/** @type {string} */ name, /** @type {unknown} */ value) {
  const w = /** @type {any} */ (window);
  w.aistatus = w.aistatus ?? {};
  w.aistatus[name] = value;
}
