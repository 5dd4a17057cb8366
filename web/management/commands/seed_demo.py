from django.core.management.base import BaseCommand

from web.demo import DEMO_PASSWORD, DEMO_USERNAME, PARKED_QUEUE, seed_demo


class Command(BaseCommand):
    help = (
        "Demo data showing every state at once: the demo user (demo / demo-password), a channel with a content "
        "in each status, a video, a finished AI job, unread notifications. Idempotent."
    )

    def handle(self, *args, **options) -> None:
        report = seed_demo()
        made = ", ".join(report.created) if report.created else "nothing new"
        self.stdout.write(
            f"Demo data ({made}): user '{DEMO_USERNAME}' (password '{DEMO_PASSWORD}'), channel "
            f"'{report.channel.name}' at /app/channels/{report.channel.id}/ with a waiting, a generating, two "
            f"complete and a failed content; the studio at /app/studio/. The waiting and generating ones stay so "
            f"until `manage.py rqworker {PARKED_QUEUE} --burst` finishes them, live on the page."
        )
