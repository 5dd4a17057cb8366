"""What the browser tests share: Debian's chromium driven by Playwright, the seeds'
client code, and database work done beside Playwright's event loop."""

import threading
from collections.abc import Callable
from pathlib import Path

BROWSER_DIR = Path(__file__).parent / "browser"
SEED_HOOKS = (BROWSER_DIR / "seed_content_hooks.js").read_text()
SEED_BATCH_CLIENTS = (BROWSER_DIR / "seed_batch_clients.js").read_text()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


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
