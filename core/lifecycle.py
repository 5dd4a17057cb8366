"""One lifecycle for long work run by a worker: contents and AI jobs are two kinds of it.

A kind declares its model, its status field, its run id (the fence: the RQ job id
that owns the current run), its states and allowed edges, the values a row takes on
entering a state, the event it publishes, the RQ task that runs it and its stall
policy. This module holds the one mechanism they share:

- `transition()`: the one compare-and-set status change. It matches the row as it
  was read (id, status, version, run id, plus a kind's own guard), raises the
  version, and writes the kind's event in the same transaction (sent on commit).
  A refused edge raises `TransitionNotAllowed`; a row someone else moved is left
  alone (None).
- `record_progress()`: the same fenced compare-and-set for an update within a
  status (a run's partial result, its progress): same match, version + 1, the
  kind's event in the transaction. A stale run's write is refused (None).
- run ids: `new_run_id()`, and `enqueue_on_commit()` which hands a run to RQ once
  the row naming it is committed.
- `keep_alive()`: the heartbeat of a run, fenced by its run id.
- `move()`: `transition()` once more if the database connection died under it.
- `sweep()`: the one sweep of stalled runs and lost enqueues, with the kind's policy.

It knows no app: the kinds are declared by contents and aijobs, which pass their
publish function (realtime.streams.publish) along.
"""

import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.db import transaction
from django.db.models import F, Model, Q
from django.utils import timezone

from core import heartbeat, metrics, request_log
from core.db import move_again_if_lost
from core.queue import job_is_waiting, missing_jobs

logger = logging.getLogger(__name__)
SWEEP_BATCH = 200


class TransitionNotAllowed(Exception):
    """An edge the kind does not allow: a programming error or a stale request, never
    written. The API answers it 409 (core.errors)."""

    def __init__(self, kind: str, source: str, target: str) -> None:
        super().__init__(f"A {kind} cannot move from {source} to {target}.")
        self.kind, self.source, self.target = kind, source, target


@dataclass(frozen=True)
class Move:
    """What one transition did, for the steps its service runs in its transaction."""

    source: str
    to: str
    values: Mapping[str, Any]
    previous: Mapping[str, Any]  # the written fields as they were before the move
    now: datetime

    def before(self, row: Any, name: str) -> Any:
        """A field of `row` as it was before the move (one the move did not write is as it is)."""
        return self.previous[name] if name in self.previous else getattr(row, name)


# A side effect of a transition (a refund, a notification...), run in its transaction.
Step = Callable[[Any, Move], None]


@dataclass(frozen=True)
class StallPolicy:
    """What the sweep does with a kind's runs.

    - A run in `lost_in` whose heartbeat is older than `lost_after()` seconds and
      whose RQ job the queue has no record of (the enqueue after commit failed, or
      Redis lost it) is enqueued again under a new run id, costing no attempt.
    - A run in `stalled_in` whose heartbeat is older than `stall_after()` seconds
      (its worker died) and whose job is not waiting in the queue is retried under a
      new run id while `attempts` stays under `max_attempts()`; otherwise (or when the
      kind has no attempts) it moves to `fail_to` with `give_up(row)` as its error.
      Such a run is this rule's, never the lost-enqueue rule's, so attempts bound it.
    """

    lost_in: Collection[str]
    lost_after: Callable[[], float]
    stalled_in: Collection[str]
    stall_after: Callable[[], float]
    fail_to: str
    give_up: Callable[[Any], str]
    max_attempts: Callable[[], int] | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[Model]
    status_field: str
    fence_field: str  # the run id: the RQ job that owns the current run
    run_id_prefix: str
    edges: Mapping[str, frozenset[str]]
    # The values a row takes on entering `to` (progress, timestamps, the error of a
    # failure...), besides its status: on_entry(row, to, now, error).
    on_entry: Callable[[Any, str, datetime, str], dict[str, Any]]
    # (stream, event type, payload) of a row as it now is, and the function that writes it.
    event: Callable[[Any], tuple[str, str, dict[str, Any]]]
    publish: Callable[[str, str, dict[str, Any]], Any]
    task: str  # dotted path of the RQ entry point, called with the row's id
    job_timeout: Callable[[], int]
    stall: StallPolicy
    # Statuses whose entry starts (or renews) a run's heartbeat.
    running: Collection[str] = ()
    # Extra conditions a move must match, e.g. "no cancel pending" for a progress step.
    guard: Callable[[Any, str], dict[str, Any]] = field(default=lambda row, to: {})

    def status_of(self, row: Any) -> str:
        return getattr(row, self.status_field)

    def run_of(self, row: Any) -> str:
        return getattr(row, self.fence_field)

    @property
    def job_label(self) -> str:
        """The kind in the metrics' `job` label ("AI job" is ai_job)."""
        return self.name.lower().replace(" ", "_")


def new_run_id(kind: Kind, pk: Any) -> str:
    """A fresh RQ job id for a row's run; handing a row to a new one fences out the old."""
    return f"{kind.run_id_prefix}-{pk}-{uuid.uuid4().hex[:12]}"


def transition(
    kind: Kind,
    row: Any,
    *,
    to: str,
    changes: Mapping[str, Any] | None = None,
    error: str = "",
    steps: Sequence[Step] = (),
) -> Any | None:
    """Move `row` from the status it was read in to `to`, with the kind's entry values
    and `changes` in the same UPDATE, which matches the row as it was read (status,
    version, run id and the kind's guard): if someone else moved it first, or the
    sweep handed the run to another job, nothing is written and None is returned.

    On success the row's version rises by one; `steps` (the service's side effects)
    run, then the kind's event is written, all in one transaction; the event is sent
    once it commits. Raises TransitionNotAllowed for an edge the kind does not have."""
    source = kind.status_of(row)
    if to not in kind.edges.get(source, frozenset()):
        raise TransitionNotAllowed(kind.name, source, to)
    now = timezone.now()
    values: dict[str, Any] = {kind.status_field: to, **kind.on_entry(row, to, now, error)}
    if to in kind.running:
        values["heartbeat_at"] = now
    values.update(changes or {})
    match = {
        "pk": row.pk, kind.status_field: source, "version": row.version, kind.fence_field: kind.run_of(row),
        **kind.guard(row, to),
    }
    with transaction.atomic():
        if not kind.model._default_manager.filter(**match).update(version=F("version") + 1, **values):
            return None
        done = Move(source=source, to=to, values=values, previous={name: getattr(row, name) for name in values}, now=now)
        for name, value in values.items():
            setattr(row, name, value)
        row.version += 1
        for step in steps:
            step(row, done)
        kind.publish(*kind.event(row))
    return row


def record_progress(kind: Kind, row: Any, *, changes: Mapping[str, Any]) -> Any | None:
    """Write `changes` (a partial result, the progress) on `row` in the status it is in,
    fenced as `transition()` is: the UPDATE matches the row as it was read (status,
    version, run id and the kind's guard), so a run the sweep handed to another job,
    or a row moved on meanwhile, writes nothing and gets None. On success the version
    rises by one and the kind's event is written in the same transaction (sent once it
    commits), so a client that reconnects replays partial results like any change.
    A running row's heartbeat is touched too: the run is evidently alive."""
    status = kind.status_of(row)
    values: dict[str, Any] = dict(changes)
    if status in kind.running:
        values["heartbeat_at"] = timezone.now()
    match = {
        "pk": row.pk, kind.status_field: status, "version": row.version, kind.fence_field: kind.run_of(row),
        **kind.guard(row, status),
    }
    with transaction.atomic():
        if not kind.model._default_manager.filter(**match).update(version=F("version") + 1, **values):
            return None
        for name, value in values.items():
            setattr(row, name, value)
        row.version += 1
        kind.publish(*kind.event(row))
    return row


def move(kind: Kind, row: Any, *, to: str, **kwargs: Any) -> Any | None:
    """`transition()`, once more if the database connection dies under it (core.db):
    a worker that lost its connection carries on rather than leaving the row to the sweep."""
    return move_again_if_lost(
        lambda fresh: transition(kind, fresh, to=to, **kwargs), row, to=to, status=kind.status_field, fence=kind.fence_field
    )


def enqueue(kind: Kind, pk: Any, *, run_id: str) -> None:
    """Hand the run to RQ. The task is named by its path, so the services that enqueue
    never import the tasks module (which imports them). The job carries the id of the
    request that enqueued it (if any): the worker's lines for it, and the events it
    publishes, name that request (core.request_log, core.worker)."""
    request_id = request_log.current_request_id()
    django_rq.get_queue("default").enqueue(
        kind.task, str(pk), job_id=run_id, job_timeout=kind.job_timeout(), result_ttl=3600, failure_ttl=86400,
        meta={"request_id": request_id} if request_id else None,
    )


def enqueue_on_commit(kind: Kind, row: Any) -> None:
    """Enqueue the row's run once the transaction that names it commits. robust: a
    failed enqueue (Redis away) must not fail the request whose row is committed; the
    sweep enqueues it again (the lost-enqueue rule of `sweep()`)."""
    pk, run_id = row.pk, kind.run_of(row)
    transaction.on_commit(lambda: enqueue(kind, pk, run_id=run_id), robust=True)


@contextmanager
def keep_alive(kind: Kind, row: Any, *, seconds: float = heartbeat.HEARTBEAT_SECONDS) -> Iterator[None]:
    """Beat for the row while its run works in the status it is in: a row moved on, or
    handed to another run, is left alone."""
    with heartbeat.keep_alive(
        kind.model, seconds=seconds, pk=row.pk, **{kind.status_field: kind.status_of(row), kind.fence_field: kind.run_of(row)}
    ):
        yield


def _hand_to_new_run(kind: Kind, row: Any, *, now: datetime, count_attempt: bool) -> bool:
    """Give the row a new run id (which fences out any runner of the old one) and enqueue it."""
    run_id = new_run_id(kind, row.pk)
    values: dict[str, Any] = {"heartbeat_at": now, kind.fence_field: run_id}
    if count_attempt:
        values["attempts"] = F("attempts") + 1
    with transaction.atomic():
        claimed = kind.model._default_manager.filter(
            pk=row.pk, **{kind.status_field: kind.status_of(row), "version": row.version, kind.fence_field: kind.run_of(row)}
        ).update(**values)
        if claimed:
            transaction.on_commit(lambda: enqueue(kind, row.pk, run_id=run_id), robust=True)
    return bool(claimed)


def _stale(before: datetime) -> Q:
    # A row with no heartbeat at all never had a run (backfilled rows): stale too.
    return Q(heartbeat_at__lt=before) | Q(heartbeat_at__isnull=True)


def requeue_lost(kind: Kind, now: datetime | None = None) -> int:
    """The lost-enqueue rule of the kind's policy (see StallPolicy); how many were enqueued again."""
    now = now or timezone.now()
    policy = kind.stall
    stalled = Q(**{f"{kind.status_field}__in": list(policy.stalled_in)}) & _stale(now - timedelta(seconds=policy.stall_after()))
    candidates = list(
        kind.model._default_manager.filter(**{f"{kind.status_field}__in": list(policy.lost_in)})
        .filter(_stale(now - timedelta(seconds=policy.lost_after())))
        .exclude(stalled)
        .order_by(F("heartbeat_at").asc(nulls_first=True))[:SWEEP_BATCH]
    )
    missing = missing_jobs([kind.run_of(row) for row in candidates])
    requeued = sum(_hand_to_new_run(kind, row, now=now, count_attempt=False) for row in candidates if kind.run_of(row) in missing)
    if requeued:
        logger.warning("Sweep: %d %s runs whose job the queue did not have were enqueued again", requeued, kind.name)
        metrics.swept(kind.job_label, "requeued", requeued)
    return requeued


def sweep_stalled(kind: Kind, now: datetime | None = None, *, steps: Sequence[Step] = ()) -> dict[str, int]:
    """The stalled-run rule of the kind's policy (see StallPolicy). `steps` are the
    side effects of the failing move (the service's, as for any finish)."""
    now = now or timezone.now()
    policy = kind.stall
    # Any: the kind's model, whose fields (attempts) this module does not know.
    stalled: Iterable[Any] = (
        kind.model._default_manager.filter(**{f"{kind.status_field}__in": list(policy.stalled_in)})
        .filter(_stale(now - timedelta(seconds=policy.stall_after())))
        .order_by(F("heartbeat_at").asc(nulls_first=True))[:SWEEP_BATCH]
    )
    retried = failed = 0
    for row in stalled:
        if job_is_waiting(kind.run_of(row)):
            continue  # not stalled, just waiting for a free worker
        if policy.max_attempts is not None and row.attempts < policy.max_attempts():
            retried += _hand_to_new_run(kind, row, now=now, count_attempt=True)
        elif transition(kind, row, to=policy.fail_to, error=policy.give_up(row), steps=steps):
            failed += 1
    if retried or failed:
        logger.info("Sweep: %d stalled %s runs retried, %d failed", retried, kind.name, failed)
        metrics.swept(kind.job_label, "retried", retried)
        metrics.swept(kind.job_label, "failed", failed)
    return {"retried": retried, "failed": failed}


def sweep(kind: Kind, now: datetime | None = None, *, steps: Sequence[Step] = ()) -> dict[str, int]:
    """Both rules, lost enqueues first; what each did."""
    now = now or timezone.now()
    return {"requeued": requeue_lost(kind, now), **sweep_stalled(kind, now, steps=steps)}
