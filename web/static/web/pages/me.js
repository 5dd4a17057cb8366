// @ts-check
/**
 * The signed-in user's feed, one per page: the bell and the studio share it (an ES
 * module is evaluated once per page). Every `[data-feed="user"]` element shows its mode.
 */
import { UserFeed } from '../kit/user.js';
import { expose, showMode } from './common.js';

/** The kit's connection log, kept for debugging (and read by the browser tests). */
export const log = /** @type {import('../kit/live.js').LogEntry[]} */ ([]);

export const me = new UserFeed({ onLog: (entry) => { log.push(entry); if (log.length > 500) log.shift(); } });
expose('user', me);
expose('userLog', log);

me.subscribe((state) => {
  for (const node of document.querySelectorAll('[data-feed="user"]')) {
    showMode(/** @type {HTMLElement} */ (node), state.mode, state.pollSeconds);
  }
});
me.start().catch((error) => console.error('user feed:', error));
