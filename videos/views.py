"""Thin views over videos.services and videos.selectors."""

import hashlib
import hmac
import uuid

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny, IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import BearerTokenAuthentication, ReadOnlySessionAuthentication
from core.batch import not_found
from core.body_limit import body_limit
from core.client import client_identity
from core.errors import NotFound, PayloadTooLarge, ProblemDetailsSerializer
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.pagination import NewestFirstPagination
from core.polling import poll_headers_every
from core.uploads import DigestingMultiPartParser
from videos import selectors, services
from videos.models import Comment, Video
from videos.serializers import (
    BatchMetadataRequestSerializer,
    BatchMetadataSerializer,
    CommentCreateSerializer,
    CommentPageSerializer,
    CommentSerializer,
    LikeSerializer,
    VideoListSerializer,
    VideoPageSerializer,
    VideoSerializer,
    VideoUploadSerializer,
)

# Room in an upload's body for the multipart framing and the other fields (a title of at
# most 200 characters, remix_of) besides a file of VIDEO_MAX_UPLOAD_BYTES.
UPLOAD_FORM_ALLOWANCE = 64 * 1024


@body_limit(lambda: settings.VIDEO_MAX_UPLOAD_BYTES + UPLOAD_FORM_ALLOWANCE)
class VideoCreateView(APIView):
    # The file's sha256 is taken as it is parsed: the Idempotency-Key's fingerprint holds it.
    parser_classes = [DigestingMultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": VideoUploadSerializer},
        responses={201: VideoSerializer, 413: OpenApiResponse(ProblemDetailsSerializer, description=(
            "The file is over VIDEO_MAX_UPLOAD_BYTES (200 MiB by default), or the request body over that plus "
            "64 KiB (refused while it is read, before the rest is received)."))},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        tags=["videos"],
        description="Upload a video (multipart `file`, `title`, optional `remix_of`). The file is decoded to check "
        "it is a video (MP4/QuickTime, WebM/Matroska or AVI; frames of at most `VIDEO_MAX_FRAME_PIXELS`, "
        "8,294,400 pixels by default); anything else is a 400 and nothing is stored. It is stored and served "
        "under a name and type decided from what was decoded, never the client's file name. A file over "
        "`VIDEO_MAX_UPLOAD_BYTES` (200 MiB by default) is a 413, and so is a request body over that plus 64 KiB, "
        "refused while it is read.",
    )
    def post(self, request: Request) -> Response:
        def create() -> Response:
            data = VideoUploadSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            remix_of = None
            if data.validated_data.get("remix_of"):
                try:
                    remix_of = selectors.video_get(video_id=data.validated_data["remix_of"])
                except NotFound:
                    raise ValidationError({"remix_of": ["No such video."]}) from None
            try:
                video = services.video_upload(
                    owner=request.user, file=data.validated_data["file"], title=data.validated_data["title"], remix_of=remix_of
                )
            except services.UploadRejected as rejected:
                if rejected.too_large:
                    raise PayloadTooLarge(rejected.detail) from None
                raise ValidationError({rejected.field: [rejected.detail]}) from None
            return Response(VideoSerializer(video).data, status=status.HTTP_201_CREATED)

        return idempotent(request, "videos.create", create)


class VideoDetailView(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(responses={200: VideoSerializer}, tags=["videos"])
    def get(self, request: Request, video_id: uuid.UUID) -> Response:
        return Response(VideoSerializer(selectors.video_detail(video_id=video_id)).data)


class VideoFeedView(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        responses={200: VideoPageSerializer},
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("page_size", int, description="20 by default, at most 100.")],
        tags=["videos"],
        description="Videos, newest first, cursor-paginated.",
    )
    def get(self, request: Request) -> Response:
        paginator = NewestFirstPagination()
        page: list[Video] | None = paginator.paginate_queryset(selectors.video_feed(viewer=request.user), request, view=self)
        return paginator.get_paginated_response(VideoSerializer(page, many=True).data)


class VideoTrendingView(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(responses={200: VideoListSerializer}, tags=["videos"],
                   description="The most viewed videos of the recent window (24 h by default); a view shows within 15 s.")
    def get(self, request: Request) -> Response:
        return Response({"results": VideoSerializer(selectors.video_trending(viewer=request.user), many=True).data})


# Anonymous viewers one address can be, per video and window (see anonymous_viewer).
ANONYMOUS_VIEWER_SLOTS = 4


def anonymous_viewer(request: Request) -> str:
    """Who an anonymous viewer is, for counting a view once per window: the client's
    identity (core.client: the socket's address, or what our own trusted proxies
    forwarded, never a header the client chose; an IPv6 address stands for its /64,
    CLIENT_IPV6_PREFIX) and one of ANONYMOUS_VIEWER_SLOTS slots picked by
    its User-Agent, keyed-hashed so that Redis keeps no address. Not a cookie: a loop
    that drops it would be a new viewer every time. Not the User-Agent itself either:
    it is the client's to write, and a loop that changed it on every call counted every
    call (100 of 100). The slots still tell apart a few browsers behind one address
    (an office, a household), and a loop from one address buys at most that many views."""
    agent = request.META.get("HTTP_USER_AGENT", "")
    slot = hashlib.sha256(agent.encode(errors="replace")).digest()[0] % ANONYMOUS_VIEWER_SLOTS
    client = f"{client_identity(request)}\n{slot}"
    return hmac.new(settings.SECRET_KEY.encode(), client.encode(), hashlib.sha256).hexdigest()[:32]


class VideoViewView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = [BearerTokenAuthentication, ReadOnlySessionAuthentication]

    @extend_schema(
        request=None, responses={204: None}, tags=["videos"],
        description="Count a view: once per viewer (the user; an anonymous client by its address and User-Agent, "
        "at most 4 viewers per address) within VIEW_DEDUP_SECONDS. Batch metadata and the video show it at once.",
    )
    def post(self, request: Request, video_id: uuid.UUID) -> Response:
        services.video_view(video_id=video_id, user=request.user, client_key=anonymous_viewer(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VideoLikeView(APIView):
    @extend_schema(request=None, responses={200: LikeSerializer}, tags=["videos"], description="Like once; repeating changes nothing.")
    def post(self, request: Request, video_id: uuid.UUID) -> Response:
        video = selectors.video_get(video_id=video_id)
        services.video_like(video=video, user=request.user)
        video.refresh_from_db(fields=["like_count"])
        return Response({"liked": True, "like_count": video.like_count})

    @extend_schema(request=None, responses={200: LikeSerializer}, tags=["videos"])
    def delete(self, request: Request, video_id: uuid.UUID) -> Response:
        video = selectors.video_get(video_id=video_id)
        services.video_unlike(video=video, user=request.user)
        video.refresh_from_db(fields=["like_count"])
        return Response({"liked": False, "like_count": video.like_count})


class VideoCommentsView(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(request=CommentCreateSerializer, responses={201: CommentSerializer}, tags=["videos"])
    def post(self, request: Request, video_id: uuid.UUID) -> Response:
        data = CommentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        comment = services.video_comment(video=selectors.video_get(video_id=video_id), user=request.user, text=data.validated_data["text"])
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: CommentPageSerializer}, parameters=[OpenApiParameter("cursor", str)], tags=["videos"])
    def get(self, request: Request, video_id: uuid.UUID) -> Response:
        paginator = NewestFirstPagination()
        comments = selectors.comment_list(video=selectors.video_get(video_id=video_id), viewer=request.user)
        page: list[Comment] | None = paginator.paginate_queryset(comments, request, view=self)
        return paginator.get_paginated_response(CommentSerializer(page, many=True).data)


class VideoBatchMetadataView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = [BearerTokenAuthentication, ReadOnlySessionAuthentication]

    @extend_schema(
        request=BatchMetadataRequestSerializer,
        responses={200: BatchMetadataSerializer},
        tags=["videos"],
        description="Exact counters of up to 100 videos in one query. A read: answers anonymous callers and "
        "session-cookie callers without a CSRF token. Sends `X-Poll-Interval`.",
    )
    def post(self, request: Request) -> Response:
        data = BatchMetadataRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["video_ids"]
        videos = selectors.video_metadata(video_ids=ids)
        body = {"videos": videos, "not_found": not_found(ids, (i for i in ids if str(i) in videos))}
        return Response(body, headers=poll_headers_every(settings.POLL_INTERVAL_VIDEO_METADATA))
