"""Database work that outlives its connection.

RQ jobs and heartbeat threads hold one connection for as long as they run, and a
server restart, a failover or `pg_terminate_backend` can end it under them. Django
replaces a broken connection only between requests, and neither is a request: left
alone, every later query of the job fails too, and the row it was moving stays
active until the stall sweep, minutes later. So they drop the connection, read the
row again and carry on, which the fenced compare-and-set transitions make safe.
"""

import logging
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.db.models import Model

logger = logging.getLogger(__name__)

# What a query raises when the server ended the connection, and what the dead connection
# raises afterwards. (Deadlocks and serialization failures are OperationalErrors too:
# one more try from a fresh read handles them just as well.)
CONNECTION_LOST = (OperationalError, InterfaceError)


def drop_connection(exc: Exception, doing: str) -> None:
    """Close this thread's broken connection; the next query opens a new one."""
    logger.warning("Database connection lost while %s (%s: %s); reconnecting", doing, type(exc).__name__, exc)
    connection.close()


def read_again_if_lost[T](read: Callable[[], T], *, doing: str) -> T:
    """`read()`, once more on a new connection if the connection dies under it."""
    try:
        return read()
    except CONNECTION_LOST as exc:
        drop_connection(exc, doing)
    return read()


def move_again_if_lost[M: Model](move: Callable[[M], M | None], row: M, *, to: str, status: str, fence: str) -> M | None:
    """`move(row)`, a fenced transition of `row` to status `to`; if the connection dies
    under it, the row (read again on a new connection) tells whether the move committed
    before its answer was lost: then the row as moved is returned. If the row is still
    as it was read, nothing was written and it is moved once more. Otherwise someone
    else moved it (or handed the run, `fence`, to another job): None, as from `move`.

    Never the object `move` was given: a transition sets the new values on it before
    its transaction commits, so after a failed commit it no longer matches the row."""
    version, run = row.version, getattr(row, fence)  # type: ignore[attr-defined]  # lifecycle models all carry version
    try:
        return move(row)
    except CONNECTION_LOST as exc:
        drop_connection(exc, f"moving {row._meta.label} {row.pk} to {to}")
    fresh: Any = type(row)._default_manager.filter(pk=row.pk, **{fence: run}).first()
    if fresh is None:
        return None
    if fresh.version == version + 1 and getattr(fresh, status) == to:
        return fresh
    if fresh.version == version:
        return move(fresh)
    return None
