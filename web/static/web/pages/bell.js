// @ts-check
/** The notification bell: unread count (live), the list, "mark all read". */
import { el, t } from './common.js';
import { me } from './me.js';

const bell = /** @type {HTMLElement} */ (document.getElementById('bell'));
const button = /** @type {HTMLButtonElement} */ (bell.querySelector('.bell-button'));
const count = /** @type {HTMLElement} */ (bell.querySelector('.bell-count'));
const panel = /** @type {HTMLElement} */ (bell.querySelector('.bell-panel'));
const list = /** @type {HTMLElement} */ (bell.querySelector('.bell-list'));
const markRead = /** @type {HTMLButtonElement} */ (bell.querySelector('.bell-mark-read'));

const UUID = /^[0-9a-f-]{36}$/i;

/** What a notification says, by its type. @param {import('../kit/user.js').Notification} n */
function message(n) {
  const d = n.data ?? {};
  const kind = d.kind ? t(`kind_${d.kind}`) : '';
  const title = d.title || t('untitled');
  switch (n.type) {
    case 'like': return d.count > 1 ? t('notification_likes', { title, count: d.count }) : t('notification_like', { title });
    case 'comment': return t('notification_comment', { text: d.text });
    case 'remix': return t('notification_remix', { title });
    case 'ai_job_completed': return t('notification_ai_job_completed', { kind });
    case 'ai_job_failed': return t('notification_ai_job_failed', { kind, error: d.error });
    case 'content_complete': return t('notification_content_complete', { title });
    case 'content_error': return t('notification_content_error', { title, error: d.error_message });
    default: return t('notification_other');
  }
}

/** Where a notification leads, on this site. @param {import('../kit/user.js').Notification} n */
function target(n) {
  const d = n.data ?? {};
  if (n.type.startsWith('content_') && UUID.test(d.channel_id ?? '')) return `/app/channels/${d.channel_id}/`;
  if (n.type.startsWith('ai_job_')) return '/app/studio/';
  return null;
}

me.subscribe((state) => {
  count.textContent = String(state.unreadCount);
  count.dataset.count = String(state.unreadCount);
  count.hidden = state.unreadCount === 0;
  button.title = t('unread', { count: state.unreadCount });
  markRead.disabled = state.unreadCount === 0;
  const items = state.notifications.slice(0, 20).map((n) => {
    const href = target(n);
    const text = message(n);
    return el('li', { className: n.is_read ? 'read' : 'unread', dataset: { id: n.id } },
      href ? el('a', { href }, text) : text,
      el('time', { dateTime: n.created_at }, new Date(n.created_at).toLocaleString(document.documentElement.lang)));
  });
  list.replaceChildren(...(items.length ? items : [el('li', { className: 'muted' }, t('no_notifications'))]));
});

button.addEventListener('click', () => {
  panel.hidden = !panel.hidden;
  button.setAttribute('aria-expanded', String(!panel.hidden));
});
markRead.addEventListener('click', async () => {
  markRead.disabled = true;
  try {
    await me.markAllRead();
  } finally {
    markRead.disabled = me.unreadCount === 0;
  }
});
