from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.batch import not_found
from core.pagination import NewestFirstPagination
from notifications.models import Notification
from notifications.serializers import (
    MarkReadRequestSerializer,
    MarkReadSerializer,
    NotificationFilterSerializer,
    NotificationPageSerializer,
    NotificationSerializer,
)
from notifications.services import mark_read, unread_count
from realtime.streams import LAST_EVENT_ID_HEADER, known_seq, user_stream


class NotificationListView(APIView):
    @extend_schema(
        parameters=[NotificationFilterSerializer, OpenApiParameter("cursor", str)],
        responses={200: NotificationPageSerializer},
        tags=["notifications"],
        description="Your notifications, newest first, cursor-paginated, with your unread count. New ones and "
        "changes of the unread count are pushed on `WS /v1/ws` as `notification`. `X-Last-Event-ID` is the "
        "user stream's last event id at the time of this answer: subscribe with it as `since` to miss nothing.",
    )
    def get(self, request: Request) -> Response:
        query = NotificationFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        # Read before the rows: a stream opened from here replays anything the rows may have missed.
        head = known_seq(user_stream(request.user.id))
        notifications = Notification.objects.filter(recipient_id=request.user.id)
        if query.validated_data.get("unread") is True:
            notifications = notifications.filter(is_read=False)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(notifications, request, view=self)
        return Response({
            "results": NotificationSerializer(page, many=True).data,
            "next": paginator.get_next_link(),
            "unread_count": unread_count(request.user.id),
        }, headers={LAST_EVENT_ID_HEADER: str(head)})


class BatchMarkReadView(APIView):
    @extend_schema(
        request=MarkReadRequestSerializer,
        responses={200: MarkReadSerializer},
        tags=["notifications"],
        description="Mark your notifications read in one UPDATE: listed ids (at most 100), `all: true`, or "
        "everything up to `before`. Ids that are not yours or do not exist are in `not_found`.",
    )
    def post(self, request: Request) -> Response:
        data = MarkReadRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data.get("notification_ids")
        marked = mark_read(user=request.user, notification_ids=ids, everything=bool(data.validated_data.get("all")),
                           before=data.validated_data.get("before"))
        missing: list[str] = []
        if ids:
            mine = Notification.objects.filter(recipient_id=request.user.id, id__in=ids).values_list("id", flat=True)
            missing = not_found(ids, mine)
        return Response({"marked_count": marked, "success": True, "not_found": missing, "unread_count": unread_count(request.user.id)})


