"""What a client may send as an event id to resume from: SSE's `Last-Event-ID`
header (or `?last_event_id=`), the WebSocket's `since`. One rule for all of them.

An event id is a stream's `seq`, a PostgreSQL bigint: ASCII digits only (Python's
`isdigit()` and `int()` also take other scripts' digits, superscripts and thousands
of digits, which ended in a 500), at most 19 of them, and no larger than a bigint
holds (a larger one reached the database and failed there)."""

import re
from typing import Any

MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")
MESSAGE = "An event id is a non-negative integer of at most 19 digits."


class InvalidEventId(ValueError):
    def __init__(self) -> None:
        super().__init__(MESSAGE)


def parse_event_id(value: Any) -> int:
    """The event id `value` names, from a string (a header, a query parameter, a
    string in JSON) or a JSON integer; InvalidEventId for anything else."""
    if isinstance(value, str) and _EVENT_ID.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise InvalidEventId
    if not 0 <= number <= MAX_EVENT_ID:
        raise InvalidEventId
    return number
