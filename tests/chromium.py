"""What the browser tests share: Debian's chromium driven by Playwright, the seeds'
client code, and database work done beside Playwright's event loop."""

import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

BROWSER_DIR = Path(__file__).parent / "browser"
SEED_HOOKS = (BROWSER_DIR / "seed_content_hooks.js").read_text()
SEED_BATCH_CLIENTS = (BROWSER_DIR / "seed_batch_clients.js").read_text()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


# Each page's console, as record_console collects it (not an attribute of the Page:
# Playwright's Page has a console_messages() method of its own).
_CONSOLES: "weakref.WeakKeyDictionary[Page, list[str]]" = weakref.WeakKeyDictionary()


def record_console(page: "Page", *, with_types: bool = False) -> list[str]:
    """Collect the page's console messages from now on: their text, or with
    `with_types` "type: text" and the page's uncaught errors as "pageerror: ..."."""
    messages: list[str] = []
    if with_types:
        page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    else:
        page.on("console", lambda message: messages.append(message.text))
    _CONSOLES[page] = messages
    return messages


def console_of(page: "Page") -> list[str]:
    """What record_console has collected of the page's console so far."""
    return _CONSOLES[page]


# Every Content-Security-Policy violation in the page's documents, as the browser
# reports it to the page (the event fires for blocked and report-only alike).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => window.__cspViolations.push(
  `${event.effectiveDirective} blocked ${event.blockedURI || 'inline'} at ${event.sourceFile || event.documentURI}:${event.lineNumber}`));
"""


def record_csp_violations(page: "Page") -> None:
    """From now on, each document the page opens records its CSP violations."""
    page.add_init_script(RECORD_CSP_VIOLATIONS)


def csp_violations(page: "Page") -> list[str]:
    """The current document's CSP violations, and every one its console reported since
    record_console (Chromium logs each: "Refused to ... Content Security Policy ...")."""
    reported = page.evaluate("window.__cspViolations ?? []")
    logged = [m for m in _CONSOLES.get(page, []) if "Content Security Policy" in m]
    return [*reported, *logged]


def in_own_thread(work: Callable[[], object]) -> None:
    """Database work while Playwright's loop runs in this thread: in a plain thread,
    whose connection is closed afterwards (not left to the loop's context)."""
    from django.db import connection

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
