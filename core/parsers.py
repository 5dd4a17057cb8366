"""JSON from clients (REST bodies, WebSocket messages), parsed with a bound on nesting.

Python's json module recurses once per nesting level: a body of 100,000 `[` raised
RecursionError, which nothing mapped (a 500), and a shallower one that parsed could
still exhaust recursion in whatever walks it next. No request of this API nests
deeper than a few levels, so anything deeper than JSON_MAX_DEPTH is refused as a
parse error (400) before any view or consumer sees it."""

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {settings.JSON_MAX_DEPTH} levels deep.")


def check_depth(value: dict[str, Any] | list[Any]) -> None:
    """JSONTooDeep if an array or object in `value` (itself one) is nested deeper than
    JSON_MAX_DEPTH. Iterative, so that the check itself cannot recurse."""
    limit = settings.JSON_MAX_DEPTH
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > limit:
            raise JSONTooDeep
        children = node.values() if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def loads(text: str | bytes) -> Any:
    """json.loads with the nesting bound: ValueError (JSONTooDeep among them) for
    anything that is not acceptable JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep from None
    if isinstance(value, (dict, list)):
        check_depth(value)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the nesting bound: too deep is a 400 parse error."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            value = super().parse(stream, media_type, parser_context)
            if isinstance(value, (dict, list)):
                check_depth(value)
        except (RecursionError, JSONTooDeep):
            raise ParseError(f"JSON parse error - nested more than {settings.JSON_MAX_DEPTH} levels deep.") from None
        return value
