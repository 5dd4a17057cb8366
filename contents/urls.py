from django.urls import path

from contents import streams, views
from realtime.views import websocket_only

urlpatterns = [
    path("api/channels", views.ChannelListCreateView.as_view(), name="channel-create"),
    path("api/channels/<uuid:channel_id>/members", views.ChannelMembersView.as_view(), name="channel-members"),
    path("api/channels/<uuid:channel_id>/members/<uuid:user_id>", views.ChannelMemberView.as_view(), name="channel-member"),
    path("contents/channel/<uuid:channel_id>", views.LegacyChannelContentsView.as_view(), name="legacy-channel-contents"),
    path("api/contents", views.ContentCreateView.as_view(), name="content-create"),
    path("api/contents/status/batch", views.ContentStatusBatchView.as_view(), name="content-status-batch"),
    path("api/contents/channel/<uuid:channel_id>", views.ChannelContentsView.as_view(), name="channel-contents"),
    path("api/contents/<uuid:content_id>", views.ContentDetailView.as_view(), name="content-detail"),
    path("api/contents/<uuid:content_id>/regenerate", views.ContentRegenerateView.as_view(), name="content-regenerate"),
    path("api/contents/<uuid:channel_id>/status", views.ChannelStatusView.as_view(), name="channel-status"),
    path("api/contents/<uuid:channel_id>/events", streams.channel_events, name="channel-events"),
    # The WebSocket itself is routed in config.asgi; a plain HTTP request is told to upgrade.
    path("api/contents/<uuid:channel_id>/ws", websocket_only, name="channel-ws-http"),
]
