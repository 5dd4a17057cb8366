from django.urls import path

from realtime.views import TicketView, websocket_only

urlpatterns = [
    path("v1/realtime/tickets", TicketView.as_view(), name="realtime-tickets"),
    # The WebSocket itself is routed in config.asgi; a plain HTTP request is told to upgrade.
    path("v1/ws", websocket_only, name="user-ws-http"),
]
