"""The Redis side of view counting: a view is a Redis INCR, not an UPDATE of the video's
row (one hot row takes a few thousand updates a second; Redis tens of thousands), and
a periodic flush (videos.services.video_views_flush) moves the counts into the rows.

Keys:
- `videos:viewed:<video id>:<viewer>`: set NX with a TTL of VIEW_DEDUP_SECONDS; a
  view whose key exists is a repeat and is not counted.
- `videos:visible:<video id>`: "1" if the video may be viewed, "0" once moderation
  hid it, for VISIBLE_SECONDS: a view then costs one Redis call and no SQL. Readers
  only set it NX, so a hide's "0" cannot be overwritten by a reader that saw the row
  just before the hide committed.
- `videos:views:pending`: a hash, video id -> views not yet flushed, plus a `batch`
  field, a UUID given when the hash is created.
- `videos:views:flushing`: the pending hash, renamed by a flush that claimed it. It
  stays until the batch's transaction has committed, then the flush deletes it; a
  flush that died meanwhile leaves it for the next one, which applies it unless the
  batch's ViewFlush row says it is in the rows already.

Every step is one Lua script or one MULTI, so Redis never holds a half-made step. A
read adds what is still in Redis to the rows' counts: the counts of a batch whose
ViewFlush row exists are already in the rows (see videos.selectors.counted)."""

import uuid
from dataclasses import dataclass, field

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

PENDING = "videos:views:pending"
FLUSHING = "videos:views:flushing"
BATCH_FIELD = "batch"

# Redis unreachable: the caller falls back to the database.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)

# How long a video's visibility is remembered (a hide replaces it at once).
VISIBLE_SECONDS = 300
# view_record's outcomes besides counted (1) and repeated (0).
UNKNOWN_VIDEO = -1
HIDDEN_VIDEO = -2

RECORD = """
local visible = redis.call('GET', KEYS[3])
if not visible then return -1 end
if visible ~= '1' then return -2 end
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
end
redis.call('HSETNX', KEYS[2], ARGV[4], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""

CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then return {} end
  redis.call('RENAME', KEYS[2], KEYS[1])
  redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""

RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_clients: dict[str, tuple[redis.Redis, dict[str, Script]]] = {}


def _redis() -> tuple[redis.Redis, dict[str, Script]]:
    """A client per process (its own connection pool), failing fast: a view waits at
    most a second or two for an unreachable Redis before it goes to the database. One
    retry, without backoff, replaces a connection that a restarted Redis closed."""
    url = settings.REDIS_URL
    if url not in _clients:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 1))
        scripts = {name: client.register_script(source) for name, source in (("record", RECORD), ("claim", CLAIM), ("release", RELEASE))}
        _clients[url] = (client, scripts)
    return _clients[url]


@dataclass
class Batch:
    """View counts held in one Redis hash."""

    token: uuid.UUID
    views: dict[uuid.UUID, int] = field(default_factory=dict)


def view_record(*, video_id: uuid.UUID, viewer: str) -> int:
    """Count a view of a video known to be visible, unless this viewer's view of it was
    counted within VIEW_DEDUP_SECONDS (0: every view counts). 1 if counted, 0 if a
    repeat, UNKNOWN_VIDEO or HIDDEN_VIDEO if nothing was counted because the video's
    visibility is not remembered or it was hidden. Raises UNREACHABLE."""
    _, scripts = _redis()
    return int(scripts["record"](
        keys=[f"videos:viewed:{video_id}:{viewer}", PENDING, _visible_key(video_id)],
        args=[str(video_id), settings.VIEW_DEDUP_SECONDS, uuid.uuid4().hex, BATCH_FIELD],
    ))


def _visible_key(video_id: uuid.UUID) -> str:
    return f"videos:visible:{video_id}"


def visible_remember(video_id: uuid.UUID) -> None:
    """The video was read as visible: remember it, unless a hide was remembered meanwhile."""
    client, _ = _redis()
    client.set(_visible_key(video_id), "1", nx=True, ex=VISIBLE_SECONDS)


def hidden_remember(video_ids: list[uuid.UUID]) -> None:
    """The videos were hidden (committed): no view of them counts from now on."""
    client, _ = _redis()
    pipeline = client.pipeline(transaction=False)
    for video_id in video_ids:
        pipeline.set(_visible_key(video_id), "0", ex=VISIBLE_SECONDS)
    pipeline.execute()


def _batch(token: bytes | None, views: dict[uuid.UUID, int]) -> Batch | None:
    try:
        return Batch(uuid.UUID(token.decode()), views) if token else None
    except ValueError:
        return None


def views_unflushed(video_ids: list[uuid.UUID]) -> list[Batch]:
    """The views of these videos still in Redis (being flushed, then pending), read in
    one round trip. Empty if Redis is unreachable: the rows' counts are all there is."""
    if not video_ids:
        return []
    client, _ = _redis()
    fields = [str(i) for i in video_ids]
    pipeline = client.pipeline(transaction=True)
    for key in (FLUSHING, PENDING):
        pipeline.hget(key, BATCH_FIELD)
        pipeline.hmget(key, fields)
    try:
        flushing_token, flushing, pending_token, pending = pipeline.execute()
    except UNREACHABLE:
        return []
    batches = []
    for token, values in ((flushing_token, flushing), (pending_token, pending)):
        batch = _batch(token, {i: int(v) for i, v in zip(video_ids, values, strict=True) if v})
        if batch is not None:
            batches.append(batch)
    return batches


def views_claim() -> Batch | None:
    """The batch to flush: one a flush left behind (it died before deleting it), else
    the pending views, renamed atomically so that new views start a new batch."""
    _, scripts = _redis()
    flat = scripts["claim"](keys=[FLUSHING, PENDING], args=[uuid.uuid4().hex, BATCH_FIELD])
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    views: dict[uuid.UUID, int] = {}
    for name, value in fields.items():
        try:
            views[uuid.UUID(name.decode())] = int(value)
        except ValueError:
            continue  # the batch field
    return _batch(fields.get(BATCH_FIELD.encode()), views)


def views_release(batch: Batch) -> None:
    """Delete the claimed batch, once its counts are committed in the rows."""
    _, scripts = _redis()
    scripts["release"](keys=[FLUSHING], args=[batch.token.hex, BATCH_FIELD])
