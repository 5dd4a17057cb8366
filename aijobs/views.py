"""Thin views over aijobs.services and aijobs.selectors."""


import uuid

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from aijobs import credits, selectors, services
from aijobs.models import FINISHED, AIJob
from aijobs.serializers import (
    AIJobCreateSerializer,
    AIJobFilterSerializer,
    AIJobPageSerializer,
    AIJobSerializer,
    BatchStatusRequestSerializer,
    BatchStatusSerializer,
    CreditsSerializer,
)
from core.batch import not_found
from core.errors import NotFound, ProblemDetailsSerializer
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.pagination import NewestFirstPagination
from core.polling import poll_headers
from realtime.streams import LAST_EVENT_ID_HEADER, known_seq, user_stream
from videos.selectors import video_get

JOBS_IN_FLIGHT_429 = OpenApiResponse(
    ProblemDetailsSerializer,
    description="Too many of your jobs are queued or processing (`too_many_jobs_in_flight`); see `Retry-After`.",
)


class AIJobListCreateView(APIView):
    @extend_schema(
        request=AIJobCreateSerializer,
        responses={202: AIJobSerializer, 429: JOBS_IN_FLIGHT_429},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        tags=["ai-jobs"],
        description="Queue a glitch or remix of a video. Answers 202 `queued`; credits are taken when a worker "
        "starts it (a balance that cannot cover it ends the job `failed`, error \"Insufficient credits\", costing "
        "nothing). Progress is pushed on `WS /v1/ws` as `ai_job_update`. A user has at most "
        "`AI_JOB_MAX_IN_FLIGHT_PER_USER` (default 5) jobs queued or processing at once; past that the answer is "
        "429 (code `too_many_jobs_in_flight`, with `Retry-After`) and nothing is queued or charged.",
    )
    def post(self, request: Request) -> Response:
        def create() -> Response:
            data = AIJobCreateSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            try:
                video = video_get(video_id=data.validated_data["video_id"])
            except NotFound:  # a body field naming no video is bad input, not a missing resource
                raise ValidationError({"video_id": ["No such video."]}) from None
            job = services.job_create(
                owner=request.user, kind=data.validated_data["kind"], video=video, params=data.validated_data["params"]
            )
            job = selectors.job_get(user=request.user, job_id=job.id)
            return Response(AIJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

        return idempotent(request, "aijobs.create", create)

    @extend_schema(
        operation_id="v1_ai_jobs_list",
        parameters=[AIJobFilterSerializer, OpenApiParameter("cursor", str)],
        responses={200: AIJobPageSerializer},
        tags=["ai-jobs"],
        description="Your jobs, newest first. `X-Last-Event-ID` is the user stream's last event id at the time of "
        "this answer: subscribe to `WS /v1/ws` with it as `since` to miss nothing.",
    )
    def get(self, request: Request) -> Response:
        query = AIJobFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        # Read before the rows: a stream opened from here replays anything the rows may have missed.
        head = known_seq(user_stream(request.user.id))
        paginator = NewestFirstPagination()
        jobs = selectors.job_list(user=request.user, status=query.validated_data.get("status"))
        page: list[AIJob] | None = paginator.paginate_queryset(jobs, request, view=self)
        response = paginator.get_paginated_response(AIJobSerializer(page, many=True).data)
        response[LAST_EVENT_ID_HEADER] = str(head)
        return response


class AIJobDetailView(APIView):
    @extend_schema(responses={200: AIJobSerializer}, tags=["ai-jobs"])
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        return Response(AIJobSerializer(selectors.job_get(user=request.user, job_id=job_id)).data)


class AIJobCancelView(APIView):
    @extend_schema(
        request=None, responses={200: AIJobSerializer}, tags=["ai-jobs"],
        description="Cancel (idempotent). The job ends `failed` with error \"Cancelled\", refunded if it was charged; "
        "a running job stops at its next progress check. A repeat answers the job as it is.",
    )
    def post(self, request: Request, job_id: uuid.UUID) -> Response:
        job = services.job_cancel(selectors.job_get(user=request.user, job_id=job_id))
        return Response(AIJobSerializer(selectors.job_get(user=request.user, job_id=job.id)).data)


class AIJobBatchStatusView(APIView):
    @extend_schema(
        request=BatchStatusRequestSerializer, responses={200: BatchStatusSerializer}, tags=["ai-jobs"],
        description="Status of up to 100 of your jobs in one query; others' and unknown ids are in `not_found`. "
        "Sends `X-Poll-Interval`.",
    )
    def post(self, request: Request) -> Response:
        data = BatchStatusRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["job_ids"]
        jobs = selectors.job_statuses(user=request.user, job_ids=ids)
        active = any(job["status"] not in FINISHED for job in jobs.values())
        body = {"jobs": jobs, "not_found": not_found(ids, (i for i in ids if str(i) in jobs))}
        return Response(body, headers=poll_headers(active))


class CreditsView(APIView):
    @extend_schema(responses={200: CreditsSerializer}, tags=["ai-jobs"])
    def get(self, request: Request) -> Response:
        return Response({"balance": credits.balance(request.user), "costs": settings.AI_JOB_COSTS})
