"""One error shape for every 4xx/5xx: RFC 9457 problem details.

drf-standardized-errors does the exception handling and documents the errors in
the schema; this module only changes the shape it formats to:
`{type, title, status, detail, errors: [{code, detail, attr}]}` served as
`application/problem+json`.
"""

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from drf_standardized_errors.formatter import ExceptionFormatter
from drf_standardized_errors.handler import ExceptionHandler
from drf_standardized_errors.types import ErrorResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from core.cache import UNREACHABLE as REDIS_UNREACHABLE
from core.db import CONNECTION_LOST
from core.lifecycle import TransitionNotAllowed

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def _title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def problem(status_code: int, *, type_: str, errors: list[dict[str, Any]], detail: str | None = None) -> dict:
    """The problem document; `detail` defaults to the errors' own words."""
    if detail is None:
        if len(errors) == 1:
            only = errors[0]
            detail = f"{only['attr']}: {only['detail']}" if only.get("attr") else only["detail"]
        else:
            detail = "; ".join(f"{e['attr']}: {e['detail']}" if e.get("attr") else e["detail"] for e in errors)
    return {
        "type": type_,
        "title": _title(status_code),
        "status": status_code,
        "detail": detail,
        "errors": errors,
    }


class ProblemFormatter(ExceptionFormatter):
    def format_error_response(self, error_response: ErrorResponse) -> Any:
        errors = [{"code": e.code, "detail": e.detail, "attr": e.attr} for e in error_response.errors]
        return problem(self.exc.status_code, type_=error_response.type, errors=errors)


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "A service this request needs is unavailable for a moment; try again shortly "
        "(with the same Idempotency-Key, if it changes anything)."
    )
    default_code = "service_unavailable"
    wait = 5


# A backing service that dropped the connection or is restarting. The request's
# transaction rolled back, unless the connection died during its COMMIT: hence the
# advice to retry with the same Idempotency-Key.
UNAVAILABLE_SERVICE_ERRORS = (*REDIS_UNREACHABLE, *CONNECTION_LOST)


class ServiceError(Exception):
    """What a service or selector raises when it refuses: the one error family, mapped
    to a problem answer once, in ProblemExceptionHandler. Views never catch it to
    translate it. `detail` is for people; `code` is the problem's machine-readable code."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_detail = "The request cannot be carried out."
    default_code = "invalid"

    def __init__(self, detail: str | None = None, *, code: str | None = None, wait: int | None = None) -> None:
        self.detail = detail or self.default_detail
        self.code = code or self.default_code
        self.wait = wait  # seconds to answer in Retry-After, if any
        super().__init__(self.detail)

    def answered_detail(self) -> str:
        return self.detail


class NotFound(ServiceError, Http404):
    """No such resource, or one the caller may not see: both answer the same words, so
    an answer never tells which ids exist (the readable reason stays in the exception).
    An Http404 too, so that plain Django views (the pages) answer it 404 as well."""

    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."
    default_code = "not_found"

    def answered_detail(self) -> str:
        return self.default_detail


class PermissionDenied(ServiceError, DjangoPermissionDenied):
    """A 403 (a DjangoPermissionDenied too, for plain Django views)."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "You do not have permission to perform this action."
    default_code = "permission_denied"


class Conflict(ServiceError):
    """The resource is not in a state that allows this (a refused lifecycle edge too)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is not in a state that allows this."
    default_code = "conflict"


class LimitReached(ServiceError):
    """A per-user bound is reached: 429, with Retry-After when `wait` is given."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Request was throttled."
    default_code = "throttled"


class _ServiceErrorAnswer(exceptions.APIException):
    """A ServiceError as DRF answers it (status, code, detail and Retry-After)."""

    def __init__(self, error: ServiceError) -> None:
        self.status_code = error.status_code
        super().__init__(error.answered_detail(), error.code)
        self.wait = error.wait


class ProblemExceptionHandler(ExceptionHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, LimitReached):
            # DRF's own 429, whose detail says when to come back.
            return exceptions.Throttled(wait=exc.wait, detail=exc.detail, code=exc.code)
        if isinstance(exc, ServiceError):
            return _ServiceErrorAnswer(exc)
        if isinstance(exc, TransitionNotAllowed):
            # A move the lifecycle has no edge for, from a request: the row is not in a
            # state that allows it (nothing was written).
            return _ServiceErrorAnswer(Conflict(str(exc)))
        if isinstance(exc, UNAVAILABLE_SERVICE_ERRORS):
            logger.warning("Answering 503: %s: %s", type(exc).__name__, exc)
            return ServiceUnavailable()
        if isinstance(exc, RequestDataTooBig):
            # Django's own check of a body read whole (DATA_UPLOAD_MAX_MEMORY_SIZE).
            return PayloadTooLarge()
        return super().convert_known_exceptions(exc)

    def get_response(self, exc: exceptions.APIException, data: dict) -> Response:
        return Response(data, status=exc.status_code, headers=self.get_headers(exc), content_type=PROBLEM_CONTENT_TYPE)


def problem_response(status_code: int, detail: str, *, code: str, attr: str | None = None) -> JsonResponse:
    """A problem answer for code that runs outside DRF (plain Django views, handlers)."""
    type_ = "client_error" if 400 <= status_code < 500 else "server_error"
    body = problem(status_code, type_=type_, errors=[{"code": code, "detail": detail, "attr": attr}], detail=detail)
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def service_unavailable_response() -> JsonResponse:
    response = problem_response(503, str(ServiceUnavailable.default_detail), code=ServiceUnavailable.default_code)
    response["Retry-After"] = str(ServiceUnavailable.wait)
    return response


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return problem_response(404, "Not found.", code="not_found")


def handler500(request: HttpRequest) -> JsonResponse:
    return problem_response(500, "Server Error (500)", code="error")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return problem_response(403, "You do not have permission to perform this action.", code="permission_denied")


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        # Django answers its SuspiciousOperations here, this one included.
        return problem_response(413, str(PayloadTooLarge.default_detail), code=PayloadTooLarge.default_code)
    return problem_response(400, "Bad request.", code="bad_request")


class PayloadTooLarge(exceptions.APIException):
    """413: a request body, or a file in it, over its limit (core.body_limit refuses
    bodies while they are read; a view uses this for the finer per-file limits)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this endpoint accepts."
    default_code = "too_large"


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable"


class ProblemErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable error code, e.g. `required`, `invalid`, `not_found`.")
    detail = serializers.CharField(help_text="Human-readable explanation; for a bad id it quotes the id.")
    attr = serializers.CharField(
        allow_null=True,
        help_text="The offending field, dotted for nested or listed values (`content_ids.3`), or null.",
    )


class ProblemDetailsSerializer(serializers.Serializer):
    """RFC 9457 problem details, sent as application/problem+json."""

    type = serializers.ChoiceField(choices=["validation_error", "client_error", "server_error"])
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = ProblemErrorSerializer(many=True)  # type: ignore[assignment]  # the contract's field; DRF's metaclass pops declared fields, Serializer.errors stays
