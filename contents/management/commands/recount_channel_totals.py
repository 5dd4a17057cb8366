"""Count every channel's contents again and store the totals the status answer reads
(contents.totals): after a deploy whose migration filled them while the old code still
ran, or after rows were changed by hand. Safe while contents move; one channel at a time."""

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from contents.models import Channel
from contents.totals import STATUSES, totals_get, totals_recount


class Command(BaseCommand):
    help = "Count each channel's contents by status again and store the totals (safe while contents move)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel_ids", nargs="*", type=uuid.UUID, help="only these channels (default: all)")

    def handle(self, *args: Any, channel_ids: list[uuid.UUID], **options: Any) -> None:
        ids = channel_ids or list(Channel.objects.order_by("id").values_list("id", flat=True))
        fixed = 0
        for channel_id in ids:
            before = totals_get(channel_id)
            after = totals_recount(channel_id)
            if before != after:
                fixed += 1
                changes = ", ".join(f"{s} {before[s]} -> {after[s]}" for s in STATUSES if before[s] != after[s])
                self.stdout.write(f"{channel_id}: {changes}")
        self.stdout.write(f"{len(ids)} channels recounted, {fixed} of them differed.")
