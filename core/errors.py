"""One error shape for every 4xx/5xx: RFC 9457 problem details.

drf-standardized-errors does the exception handling and documents the errors in
the schema; this module only changes the shape it formats to:
`{type, title, status, detail, errors: [{code, detail, attr}]}` served as
`application/problem+json`.
"""

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from drf_standardized_errors.formatter import ExceptionFormatter
from drf_standardized_errors.handler import ExceptionHandler
from drf_standardized_errors.types import ErrorResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from core.cache import UNREACHABLE as REDIS_UNREACHABLE
from core.db import CONNECTION_LOST

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


class ProblemExceptionHandler(ExceptionHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
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


def handler404(request, exception=None):  # type: ignore[no-untyped-def]
    return problem_response(404, "Not found.", code="not_found")


def handler500(request):  # type: ignore[no-untyped-def]
    return problem_response(500, "Server Error (500)", code="error")


def handler403(request, exception=None):  # type: ignore[no-untyped-def]
    return problem_response(403, "You do not have permission to perform this action.", code="permission_denied")


def handler400(request, exception=None):  # type: ignore[no-untyped-def]
    if isinstance(exception, RequestDataTooBig):
        # Django answers its SuspiciousOperations here, this one included.
        return problem_response(413, str(PayloadTooLarge.default_detail), code=PayloadTooLarge.default_code)
    return problem_response(400, "Bad request.", code="bad_request")


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is not in a state that allows this."
    default_code = "conflict"

    def __init__(self, detail=None, code=None, wait: int | None = None):  # type: ignore[no-untyped-def]
        super().__init__(detail, code)
        self.wait = wait


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
    errors = ProblemErrorSerializer(many=True)
