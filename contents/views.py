"""Thin views: parse, authorise, call a service or selector, answer."""

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from contents import caching, selectors, services
from contents.models import PROCESSING_STATUSES
from contents.serializers import (
    ChannelCreateSerializer,
    ChannelMembersRequestSerializer,
    ChannelMembersSerializer,
    ChannelSerializer,
    ChannelStatusQuerySerializer,
    ChannelStatusSerializer,
    ContentCreateSerializer,
    ContentFilterSerializer,
    ContentListSerializer,
    ContentSerializer,
    ContentStatusBatchRequestSerializer,
    ContentStatusBatchSerializer,
    PaginatedContentListSerializer,
)
from core.batch import not_found
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.pagination import NewestFirstPagination
from core.polling import poll_headers

# The legacy list's retirement date (RFC 9745 Deprecation header: @<unix time>).
LEGACY_DEPRECATED_AT = 1767225600  # 2026-01-01T00:00:00Z
LAST_EVENT_ID_HEADER = "X-Last-Event-ID"

LAST_EVENT_ID_DESCRIPTION = (
    f"Responses carry `{LAST_EVENT_ID_HEADER}`: the channel stream's last event id at the time of the snapshot. "
    "Open the SSE or WebSocket stream from there to miss nothing."
)


class ContentCursorPagination(NewestFirstPagination):
    """The contract's shape for contents: `{"contents": [...], "next", "previous"}`, 25 a page."""

    page_size = 25

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"contents": data, "next": self.get_next_link(), "previous": self.get_previous_link()})


class ChannelListCreateView(APIView):
    @extend_schema(request=ChannelCreateSerializer, responses={201: ChannelSerializer}, tags=["channels"])
    def post(self, request: Request) -> Response:
        data = ChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = services.channel_create(owner=request.user, name=data.validated_data["name"])
        return Response(ChannelSerializer(channel).data, status=status.HTTP_201_CREATED)


class ChannelMembersView(APIView):
    @extend_schema(
        request=ChannelMembersRequestSerializer,
        responses={200: ChannelMembersSerializer},
        tags=["channels"],
        description="The channel's owner lets other users read its contents, status and events. Idempotent. Every "
        "well-formed id is added alike, whether or not an account has it, so the answer never tells which ids exist.",
    )
    def post(self, request: Request, channel_id: uuid.UUID) -> Response:
        channel = selectors.channel_get_owned(user=request.user, channel_id=channel_id)
        data = ChannelMembersRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user_ids = data.validated_data["user_ids"]
        added = services.channel_add_members(channel=channel, user_ids=user_ids)
        return Response({"channel_id": channel.id, "added": added, "not_found": not_found(user_ids, added)})


class ChannelMemberView(APIView):
    @extend_schema(
        request=None,
        responses={204: None},
        tags=["channels"],
        description="The owner removes a member; their open SSE and WebSocket streams of the channel are closed.",
    )
    def delete(self, request: Request, channel_id: uuid.UUID, user_id: uuid.UUID) -> Response:
        channel = selectors.channel_get_owned(user=request.user, channel_id=channel_id)
        services.channel_remove_member(channel=channel, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _content_filter(request: Request) -> str | None:
    query = ContentFilterSerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data.get("status")


class LegacyChannelContentsView(APIView):
    schema_operation_id = "get_contents_by_channel_contents_channel__channel_id__get"
    schema_tags = ["contents"]

    @extend_schema(
        responses={200: ContentListSerializer},
        deprecated=True,
        description=(
            "The original list, kept for existing clients: the newest 100 contents, now with `status` and "
            "`processing_status`. Answers with `Deprecation` and a `Link` to its successor, "
            "`GET /api/contents/channel/{channel_id}`. " + LAST_EVENT_ID_DESCRIPTION
        ),
    )
    def get(self, request: Request, channel_id: uuid.UUID) -> Response:
        selectors.channel_check_readable(user=request.user, channel_id=channel_id)
        last_event_id = caching.channel_head(channel_id)
        body = caching.remember(
            caching.contents_key(channel_id, last_event_id, "legacy"),
            caching.CONTENTS_SECONDS,
            lambda: {
                "contents": ContentSerializer(
                    selectors.content_list(channel_id=channel_id)[: selectors.LEGACY_LIST_LIMIT], many=True
                ).data
            },
        )
        return Response(
            body,
            headers={
                "Deprecation": f"@{LEGACY_DEPRECATED_AT}",
                "Link": f'</api/contents/channel/{channel_id}>; rel="successor-version"',
                LAST_EVENT_ID_HEADER: str(last_event_id),
            },
        )


class ChannelContentsView(APIView):
    @extend_schema(
        parameters=[
            ContentFilterSerializer,
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next` or `previous`."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="25 by default, at most 100."),
        ],
        responses={200: PaginatedContentListSerializer},
        tags=["contents"],
        description="A channel's contents, newest first, cursor-paginated. " + LAST_EVENT_ID_DESCRIPTION,
    )
    def get(self, request: Request, channel_id: uuid.UUID) -> Response:
        status_filter = _content_filter(request)
        selectors.channel_check_readable(user=request.user, channel_id=channel_id)
        last_event_id = caching.channel_head(channel_id)

        def page() -> dict[str, Any]:
            paginator = ContentCursorPagination()
            contents = selectors.content_list(channel_id=channel_id, status=status_filter)
            rows = paginator.paginate_queryset(contents, request, view=self)
            return paginator.get_paginated_response(ContentSerializer(rows, many=True).data).data

        # The URL carries the filter, cursor and page size, and the host the links name.
        body = caching.remember(
            caching.contents_key(channel_id, last_event_id, request.build_absolute_uri()), caching.CONTENTS_SECONDS, page
        )
        return Response(body, headers={LAST_EVENT_ID_HEADER: str(last_event_id)})


class ContentCreateView(APIView):
    @extend_schema(
        request=ContentCreateSerializer,
        responses={201: ContentSerializer},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        tags=["contents"],
        description="Submit a link, image or video (or just a title and description) to a channel you can read. "
        "Answers 201 with `status: idle`; the AI pipeline starts once the content is saved.",
    )
    def post(self, request: Request) -> Response:
        def create() -> Response:
            data = ContentCreateSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            fields = dict(data.validated_data)
            channel = selectors.channel_get(user=request.user, channel_id=fields.pop("channel_id"))
            content = services.content_submit(channel=channel, provider=request.user, **fields)
            return Response(ContentSerializer(content).data, status=status.HTTP_201_CREATED)

        return idempotent(request, "contents.create", create)


class ContentDetailView(APIView):
    @extend_schema(responses={200: ContentSerializer}, tags=["contents"])
    def get(self, request: Request, content_id: uuid.UUID) -> Response:
        return Response(ContentSerializer(selectors.content_get(user=request.user, content_id=content_id)).data)


class ContentRegenerateView(APIView):
    @extend_schema(
        request=None,
        responses={202: ContentSerializer},
        tags=["contents"],
        description="Run the AI pipeline again: retries a content in `error`, regenerates one that is `complete`. "
        "409 while it is still processing. Allowed to the content's provider and the channel's owner.",
    )
    def post(self, request: Request, content_id: uuid.UUID) -> Response:
        content = selectors.content_get_for_regenerate(user=request.user, content_id=content_id)
        restarted = services.content_restart(content)
        return Response(ContentSerializer(restarted).data, status=status.HTTP_202_ACCEPTED)


class ChannelStatusView(APIView):
    @extend_schema(
        parameters=[ChannelStatusQuerySerializer],
        responses={200: ChannelStatusSerializer, 304: OpenApiResponse(description="Unchanged since the ETag you sent.")},
        tags=["contents"],
        description=(
            "What is processing, what recently finished, exact totals. Supports `If-None-Match` (answers 304 "
            "with no body when nothing changed) and sends `X-Poll-Interval`. " + LAST_EVENT_ID_DESCRIPTION
        ),
    )
    def get(self, request: Request, channel_id: uuid.UUID) -> Response:
        query = ChannelStatusQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        since = query.validated_data.get("since")
        selectors.channel_check_readable(user=request.user, channel_id=channel_id)
        # Every change of any content in the channel publishes an event on its stream,
        # so the stream's last id (with the query) identifies this answer. Warm, an
        # unchanged poll costs no SQL at all (authentication included).
        last_event_id = caching.channel_head(channel_id)
        etag = caching.status_etag(channel_id, last_event_id, since)
        headers = {"ETag": etag, LAST_EVENT_ID_HEADER: str(last_event_id), "Cache-Control": "private, no-cache"}
        # Without `since`, an unchanged poll is answered ahead of the framework when Redis
        # has all it needs (contents.fast_status); this is its full path, and the same answer.
        if etag in caching.if_none_match(request.headers.get("If-None-Match", "")):
            active = selectors.channel_has_processing(channel_id=channel_id, head=last_event_id)
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={**headers, **poll_headers(active)})
        snapshot = selectors.channel_status(channel_id=channel_id, head=last_event_id, since=since)
        return Response(
            ChannelStatusSerializer(snapshot).data, headers={**headers, **poll_headers(snapshot["has_processing"])}
        )


class ContentStatusBatchView(APIView):
    @extend_schema(
        request=ContentStatusBatchRequestSerializer,
        responses={200: ContentStatusBatchSerializer},
        tags=["contents"],
        description="Statuses of up to 100 contents in one query. Ids that do not exist or that you may not "
        "see are listed in `not_found`. Sends `X-Poll-Interval`.",
    )
    def post(self, request: Request) -> Response:
        data = ContentStatusBatchRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["content_ids"]
        statuses = selectors.content_statuses(user=request.user, content_ids=ids)
        active = any(row["status"] in PROCESSING_STATUSES for row in statuses)
        body = {"statuses": statuses, "not_found": not_found(ids, (row["id"] for row in statuses))}
        return Response(ContentStatusBatchSerializer(body).data, headers=poll_headers(active))
