"""Redis caches of the contents API's reads. They never serve a stale status.

Every change a reader can see (a content submitted, each transition) publishes an event
on its channel's stream in the change's own transaction, and publish() raises the
stream's head in Redis on commit (realtime.streams). Entries are keyed by that head, so
the commit of a change makes every older entry unreachable, on every process, before
transition() returns and before the event is pushed. A reader reads the head before
the data, so an entry is never older than its key (at worst newer, which is harmless).

The head is the only thing that can be stale: when an advance was lost (the writer died
between COMMIT and its on-commit hook, Redis was briefly unreachable, or came back from
an older snapshot). Heads expire after realtime.streams.HEAD_SECONDS and are then read
from the database again, which bounds that window; without such a fault there is none.
A Redis that lost its data has no heads: everything is read from the database.

The TTLs are the seed's upper bounds; an entry's freshness comes from its key, not its TTL.

Who may read a channel is cached too. Removing a member writes a "no" over the entry on
commit and readers only ever `add` (never overwrite), so a reader that looked before the
removal cannot put its "yes" back afterwards.
"""

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache
from django.db import transaction

from realtime.streams import channel_stream, known_seq, known_seqs

CONTENTS_SECONDS = 300  # a channel's contents list
STATUS_SECONDS = 30  # one content's status
PROCESSING_SECONDS = 10  # a channel's processing set (and the status answer built around it)
READER_SECONDS = 60  # whether a user may read a channel
CONTENT_CHANNEL_SECONDS = 86400  # a content never moves to another channel


def channel_head(channel_id: uuid.UUID) -> int:
    """The channel stream's last committed event id (the snapshot's X-Last-Event-ID)."""
    return known_seq(channel_stream(channel_id))


def channel_heads(channel_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    streams = {channel_stream(channel_id): channel_id for channel_id in channel_ids}
    return {streams[stream]: seq for stream, seq in known_seqs(streams).items()}


def status_etag(channel_id: uuid.UUID, head: int, since: Any) -> str:
    """The status answer's ETag: the channel's head (every change a reader can see
    raises it), and a digest of the channel and the query, so that an answer of another
    channel or another `since` never matches. The head in clear lets a reader that knows
    only the tag tell which head it names (contents.fast_status)."""
    return f'"{head}-{hashlib.sha256(f"{channel_id}:{since}".encode()).hexdigest()[:16]}"'


_STATUS_ETAG = re.compile(r'"(\d{1,19})-[0-9a-f]{16}"')


def claimed_head(channel_id: uuid.UUID, tags: Iterable[str]) -> int | None:
    """The one head that `tags` (If-None-Match's) name for the channel's status without
    `since`: None when none does, or more than one."""
    heads = set()
    for tag in tags:
        match = _STATUS_ETAG.fullmatch(tag)
        if match is not None and status_etag(channel_id, int(match[1]), None) == tag:
            heads.add(int(match[1]))
    return heads.pop() if len(heads) == 1 else None


def if_none_match(value: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compared as strong)."""
    return {tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()}


def remember[T](key: str, seconds: int, compute: Callable[[], T]) -> T:
    """The entry under `key`, computed and stored when missing. Only for keys that carry
    the head read before `compute` runs."""
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, seconds)
    return value


def contents_key(channel_id: uuid.UUID, head: int, url: str) -> str:
    """A page of the contents list: the URL carries filter, cursor and page size (and the
    host the links are built on)."""
    return f"channel:{channel_id}:contents:{head}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"


def status_answer_key(channel_id: uuid.UUID, head: int, since: Any) -> str:
    return f"channel:{channel_id}:status:{head}:{since.isoformat() if since else ''}"


def processing_key(channel_id: uuid.UUID, head: int) -> str:
    return f"channel:{channel_id}:processing:{head}"


def content_status_key(content_id: uuid.UUID, head: int) -> str:
    return f"content:{content_id}:status:{head}"


def content_channel_key(content_id: uuid.UUID) -> str:
    return f"content:{content_id}:channel"


def reader_key(channel_id: uuid.UUID, user_id: Any) -> str:
    return f"channel:{channel_id}:reader:{user_id}"


def cached_readers(user_id: Any, channel_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, bool]:
    keys = {reader_key(channel_id, user_id): channel_id for channel_id in channel_ids}
    return {keys[key]: allowed for key, allowed in cache.get_many(list(keys)).items()}


def remember_reader(channel_id: uuid.UUID, user_id: Any, allowed: bool) -> None:
    # add, never set: a removal's "no" written meanwhile must win over what we read before it.
    cache.add(reader_key(channel_id, user_id), allowed, READER_SECONDS)


def forget_readers_on_commit(channel_id: uuid.UUID, user_ids: Iterable[Any], *, removed: bool) -> None:
    """After commit: a removed member is cached as "no" (so no earlier read can re-add
    "yes"); an added one is forgotten (read again from the database)."""
    keys = [reader_key(channel_id, user_id) for user_id in user_ids]

    def forget() -> None:
        if removed:
            cache.set_many(dict.fromkeys(keys, False), READER_SECONDS)
        else:
            cache.delete_many(keys)

    transaction.on_commit(forget, robust=True)
