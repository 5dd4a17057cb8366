"""Tell a sweep that long work is alive: a thread touches `heartbeat_at` on the row
while the work runs, and stops with the worker (a SIGKILL stops it too). A lost
database connection does not stop it: a heartbeat that died with its connection
would let the sweep hand a live run to another job."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.models import Model
from django.utils import timezone

from core.db import CONNECTION_LOST, drop_connection

HEARTBEAT_SECONDS = 10


@contextmanager
def keep_alive(model: type[Model], *, seconds: float = HEARTBEAT_SECONDS, **match: Any) -> Iterator[None]:
    """While the block runs, set `heartbeat_at` on the rows matching `match` (the
    match includes the run's fence, so a row handed to another run is left alone)."""
    stop = threading.Event()

    def touch() -> None:
        try:
            model._default_manager.filter(**match).update(heartbeat_at=timezone.now())
        except CONNECTION_LOST as exc:
            drop_connection(exc, f"beating for {model.__name__} {match}")  # the next beat connects again

    def beat() -> None:
        try:
            touch()
            while not stop.wait(seconds):
                touch()
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"heartbeat-{model.__name__}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
