"""A channel's totals by status, kept in one row per channel (ChannelTotals) rather than
counted: the status answer reads that row, so its cost does not grow with the channel.

The row changes only here, always inside the transaction that changes the contents it
counts (contents.services: a submit, each move's `count_in_totals` step, a deletion),
with one `UPDATE ... SET n = n + delta`: concurrent changes add up, none is lost, and
they all commit or roll back together with their contents.

Lock order, so that no two of these transactions wait on each other in a cycle: the
content rows first (their UPDATE, INSERT or SELECT ... FOR UPDATE), then the totals row
(one per transaction, or several in channel id order), then the channel's stream
(realtime.streams.publish, which runs after the services' steps).
"""

import uuid
from collections.abc import Iterable, Mapping

from django.db import connection, transaction
from django.db.models import Count

from contents.models import PROCESSING_STATUSES, ChannelTotals, Content, ContentStatus

STATUSES: tuple[str, ...] = tuple(ContentStatus.values)  # the columns of ChannelTotals, in order
_TABLE = ChannelTotals._meta.db_table


def totals_add(channel_id: uuid.UUID, deltas: Mapping[str, int]) -> None:
    """Add `deltas` ({status: change}) to the channel's counts, creating its row at the
    first change. Call it inside the transaction of the change it counts."""
    if not connection.in_atomic_block:
        raise RuntimeError("totals_add() must run inside the transaction of the change it counts.")
    unknown = set(deltas) - set(STATUSES)
    if unknown:
        raise ValueError(f"Not content statuses: {sorted(unknown)}")
    if not any(deltas.values()):
        return
    columns = ", ".join(STATUSES)
    added = ", ".join(f"{status} = t.{status} + EXCLUDED.{status}" for status in STATUSES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} AS t (channel_id, {columns}) VALUES (%s{', %s' * len(STATUSES)}) "  # noqa: S608 - names from the model
            f"ON CONFLICT (channel_id) DO UPDATE SET {added}",
            [channel_id, *(deltas.get(status, 0) for status in STATUSES)],
        )


def totals_get(channel_id: uuid.UUID) -> dict[str, int]:
    """The channel's count in each status: one primary-key read, whatever its size."""
    row = ChannelTotals.objects.filter(channel_id=channel_id).values(*STATUSES).first()
    return row or dict.fromkeys(STATUSES, 0)


def totals_processing(totals: Mapping[str, int]) -> int:
    """Not finished yet: idle or generating (the contract's "processing")."""
    return sum(totals[status] for status in PROCESSING_STATUSES)


def totals_recount(channel_id: uuid.UUID) -> dict[str, int]:
    """Count the channel's contents again and store the result; safe while contents
    move. The row is locked before the count: a change not yet committed then either
    committed before the count (which sees it) or waits for this row and adds its
    delta after it (the count did not see it)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_TABLE} (channel_id, {', '.join(STATUSES)}) VALUES (%s{', 0' * len(STATUSES)}) "  # noqa: S608
                "ON CONFLICT (channel_id) DO NOTHING",
                [channel_id],
            )
        ChannelTotals.objects.select_for_update().filter(channel_id=channel_id).values_list("channel_id").get()
        counted = dict.fromkeys(STATUSES, 0)
        for row in Content.objects.filter(channel_id=channel_id).values("status").annotate(n=Count("*")).order_by():
            counted[row["status"]] = row["n"]
        ChannelTotals.objects.filter(channel_id=channel_id).update(**counted)
    return counted


def totals_remove(contents: Iterable[tuple[uuid.UUID, str]]) -> None:
    """Take contents about to be deleted, as (channel id, status) pairs read under their
    row locks, out of their channels' counts (rows locked in channel id order)."""
    deltas: dict[uuid.UUID, dict[str, int]] = {}
    for channel_id, status in contents:
        deltas.setdefault(channel_id, dict.fromkeys(STATUSES, 0))[status] -= 1
    for channel_id in sorted(deltas):
        totals_add(channel_id, deltas[channel_id])
