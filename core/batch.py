"""The rules every batch endpoint shares, in one place.

- at most MAX_BATCH_IDS ids per call; more is a 400 naming the field and the limit;
- a malformed id is a 400 whose error quotes the id itself;
- duplicates are answered once (first occurrence keeps its place);
- ids that do not exist and ids the caller may not see are reported alike in `not_found`.
"""

import uuid
from collections.abc import Iterable
from typing import Any

from rest_framework import serializers

MAX_BATCH_IDS = 100


class BatchIdsField(serializers.ListField):
    """A list of UUIDs, deduplicated in order; the contract's batch limits apply."""

    default_error_messages = {
        "not_a_list": "Expected a list of ids, got {input_type}.",
        "too_many": "At most {limit} ids per call; {count} were sent.",
        "invalid_id": "'{value}' is not a valid id (a UUID is expected).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", serializers.UUIDField())
        kwargs.setdefault("allow_empty", True)
        kwargs.setdefault("max_length", MAX_BATCH_IDS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[uuid.UUID]:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if len(data) > MAX_BATCH_IDS:
            self.fail("too_many", limit=MAX_BATCH_IDS, count=len(data))
        errors: dict[str, list[str]] = {}
        ids: dict[uuid.UUID, None] = {}
        for index, raw in enumerate(data):
            try:
                if not isinstance(raw, str):
                    raise ValueError
                ids.setdefault(uuid.UUID(raw), None)
            except ValueError:
                errors[str(index)] = [self.error_messages["invalid_id"].format(value=raw)]
        if errors:
            raise serializers.ValidationError(errors)
        return list(ids)


def not_found(requested: Iterable[uuid.UUID], found: Iterable[uuid.UUID]) -> list[str]:
    """The requested ids missing from `found`, in request order, as strings."""
    present = set(found)
    return [str(i) for i in requested if i not in present]


class NotFoundListField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", serializers.UUIDField())
        kwargs.setdefault(
            "help_text",
            "Requested ids that do not exist or that the caller may not see (the two look the same).",
        )
        super().__init__(**kwargs)
