import uuid

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Block
from core.batch import not_found
from core.pagination import NewestFirstPagination
from moderation import services
from moderation.serializers import (
    BatchBlockRequestSerializer,
    BatchBlockSerializer,
    BatchDeleteRequestSerializer,
    BatchDeleteSerializer,
    BlockPageSerializer,
    BlockSerializer,
)


class MayDeleteVideos(BasePermission):
    """The permission the admin's audited delete asks for (moderation.admin): being staff
    is not enough, or a staff user who may only view videos could delete them here."""

    message = "Deleting videos needs the videos.delete_video permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm("videos.delete_video")


class BatchDeleteVideosView(APIView):
    permission_classes = [IsAdminUser, MayDeleteVideos]

    @extend_schema(
        request=BatchDeleteRequestSerializer, responses={200: BatchDeleteSerializer}, tags=["moderation"],
        description="Staff only, with the videos.delete_video permission. The videos disappear for everyone at "
        "once; the reason and who acted are kept; their files are removed from storage after the grace period.",
    )
    def post(self, request: Request) -> Response:
        data = BatchDeleteRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["video_ids"]
        deleted = services.videos_delete(video_ids=ids, reason=data.validated_data["reason"], by=request.user)
        return Response({"deleted_count": len(deleted), "deleted": deleted, "not_found": not_found(ids, deleted)})


class BatchBlockView(APIView):
    @extend_schema(request=BatchBlockRequestSerializer, responses={200: BatchBlockSerializer}, tags=["moderation"],
                   description="Block users (idempotent). You cannot block yourself. Every well-formed id is blocked "
                   "alike, whether or not an account has it, so the answer never tells which ids exist.")
    def post(self, request: Request) -> Response:
        data = BatchBlockRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["user_ids"]
        if request.user.id in ids:
            raise ValidationError({"user_ids": [f"'{request.user.id}' is you; you cannot block yourself."]})
        blocked = services.block_users(blocker=request.user, user_ids=ids)
        return Response({"blocked": blocked, "not_found": not_found(ids, blocked)})


class BlockPagination(NewestFirstPagination):
    page_size = 50


class BlockListView(APIView):
    @extend_schema(responses={200: BlockPageSerializer}, parameters=[OpenApiParameter("cursor", str)], tags=["moderation"],
                   description="The ids you block, newest first (ids only: no username).")
    def get(self, request: Request) -> Response:
        paginator = BlockPagination()
        page = paginator.paginate_queryset(Block.objects.filter(blocker_id=request.user.id), request, view=self)
        return paginator.get_paginated_response(BlockSerializer(page, many=True).data)


class BlockDetailView(APIView):
    @extend_schema(request=None, responses={204: None}, tags=["moderation"])
    def delete(self, request: Request, user_id: uuid.UUID) -> Response:
        if not services.unblock_user(blocker=request.user, user_id=user_id):
            raise Http404("You do not block that user.")
        return Response(status=status.HTTP_204_NO_CONTENT)
