from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from contents.models import Channel
from contents.services import channel_create, content_submit

DEMO_CONTENTS = [
    {
        "title": "Redis in one page",
        "description": (
            "Redis is an in-memory data store used as a cache, a message broker and a queue. "
            "It keeps data in memory, which makes reads and writes take well under a millisecond. "
            "Redis supports strings, hashes, lists, sets and sorted sets. "
            "Persistence is optional: snapshots or an append-only file write the data to disk. "
            "Many web applications put Redis in front of their database to cache frequent queries."
        ),
        "category": "databases",
    },
    {
        "title": "Server-Sent Events",
        "description": (
            "Server-Sent Events let a server push updates to a browser over one long HTTP response. "
            "The browser's EventSource reconnects by itself and sends the id of the last event it saw. "
            "SSE is one-way, from server to client, which is all a status feed needs. "
            "WebSockets are two-way and need more work from the server and the proxies in between."
        ),
        "category": "web",
    },
]


class Command(BaseCommand):
    help = "Create the demo user (demo / demo-password), a channel and a few contents (idempotent)."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(username="demo", defaults={"email": "demo@example.com"})
        if created:
            user.set_password("demo-password")
            user.save()
        channel = Channel.objects.filter(owner=user, name="Demo channel").first() or channel_create(owner=user, name="Demo channel")
        if not channel.contents.exists():
            for fields in DEMO_CONTENTS:
                content_submit(channel=channel, provider=user, **fields)
        self.stdout.write(f"Demo user 'demo' (password 'demo-password'), channel {channel.id}.")
