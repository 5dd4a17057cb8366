"""Who may read a stream. realtime knows no domain: each app registers, at start-up
(its AppConfig.ready()), the rule for the streams it publishes on, by the kind before
the stream's colon (`channel` for `channel:<id>`). A stream of a kind nobody
registered is read by no one."""

from collections.abc import Callable
from typing import Any

from realtime.delivery import db_read

# (an authenticated user, the stream's key after the colon) -> may they read it.
StreamRule = Callable[[Any, str], bool]

_rules: dict[str, StreamRule] = {}


def register_stream_access(kind: str, rule: StreamRule) -> None:
    """Streams named `<kind>:<key>` are read by the users `rule` allows."""
    _rules[kind] = rule


def may_read_stream_sync(user: Any, stream: str) -> bool:
    kind, _, key = stream.partition(":")
    rule = _rules.get(kind)
    return rule is not None and user.is_authenticated and rule(user, key)


# Every subscribe asks this: the rules read through their app's caches where they can.
may_read_stream = db_read(may_read_stream_sync)
