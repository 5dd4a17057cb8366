"""ASGI entry point: HTTP (including SSE) and WebSocket on one port, served by the
production server of scripts/run_stack.sh (or daphne in RUN_MODE=dev)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from core.asgi_handler import OneHopASGIHandler  # noqa: E402

# Django's get_asgi_application(), with the middleware chain in one thread hop.
django_asgi_app = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from contents.consumers import ChannelEventsConsumer  # noqa: E402
from realtime.user_consumer import UserEventsConsumer  # noqa: E402

# django-stubs' path() takes views, not ASGI apps, though channels routes consumers with
# it (as its docs do): hence the two ignores (django-stubs PR 3354 proposed the overload).
websocket_routes = URLRouter([
    path("api/contents/<uuid:channel_id>/ws", ChannelEventsConsumer.as_asgi()),  # type: ignore[arg-type, list-item]  # see above
    path("v1/ws", UserEventsConsumer.as_asgi()),  # type: ignore[arg-type, list-item]  # see above
])

from core.body_limit import BodyLimitMiddleware  # noqa: E402
from core.connection_limit import OpenRequestsPerClient  # noqa: E402
from core.fast_path import FastPaths  # noqa: E402
from core.request_log import AccessLog  # noqa: E402
from core.server_header import NoServerBanner  # noqa: E402
from realtime.inbound import MessageSizeLimit  # noqa: E402
from realtime.origin import ExactOriginValidator  # noqa: E402
from realtime.tickets import TicketRedemptionMiddleware  # noqa: E402

# Outermost: the request's id and its access line, whoever answers it (core.request_log).
# Then no answer names the server software (core.server_header). Then a ticket in a URL
# is spent before anything may refuse the request. Then what one client may hold open
# (core.connection_limit), before anything is read.
application = AccessLog(NoServerBanner(TicketRedemptionMiddleware(OpenRequestsPerClient(ProtocolTypeRouter({
    # An unchanged poll is answered ahead of Django when Redis holds all it needs,
    # exactly as Django would answer it (core.fast_path; only requests without a body).
    # Bodies over their limit, or late, are refused while they are read, before Django
    # buffers them.
    "http": FastPaths(BodyLimitMiddleware(django_asgi_app)),
    # Browsers send Origin; only pages of this origin or a trusted one (scheme, host and
    # port exactly: realtime.origin) may open a socket. A message over its size limit
    # closes it before it is parsed (realtime.inbound).
    "websocket": ExactOriginValidator(MessageSizeLimit(AuthMiddlewareStack(websocket_routes))),
})))))
