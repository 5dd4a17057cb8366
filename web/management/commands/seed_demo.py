from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from web.demo import DEMO_PASSWORD, DEMO_USERNAME, finish_parked, seed_demo


class Command(BaseCommand):
    help = (
        "Demo data showing every state at once: the demo user (demo / demo-password), a channel with a content "
        "in each status, a video, a finished AI job, unread notifications. Idempotent. --finish runs the waiting "
        "and generating contents to the end instead."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--finish", action="store_true",
            help="Run the demo's waiting and generating contents to the end (watch them on an open channel page).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["finish"]:
            self.stdout.write(f"Finished {finish_parked()} demo contents; `seed_demo` again puts new ones in progress.")
            return
        report = seed_demo()
        made = ", ".join(report.created) if report.created else "nothing new"
        self.stdout.write(
            f"Demo data ({made}): user '{DEMO_USERNAME}' (password '{DEMO_PASSWORD}'), channel "
            f"'{report.channel.name}' at /app/channels/{report.channel.id}/ with a waiting, a generating, two "
            f"complete and a failed content; the studio at /app/studio/. The waiting and generating ones stay so "
            f"until `manage.py seed_demo --finish`, which you can watch live on the channel page."
        )
