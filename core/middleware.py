"""503 for plain Django views (the streams) whose backing service dropped the
connection; DRF views get the same answer from core.errors.ProblemExceptionHandler."""

import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from core.errors import UNAVAILABLE_SERVICE_ERRORS, service_unavailable_response

logger = logging.getLogger(__name__)


class ServiceUnavailableMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, UNAVAILABLE_SERVICE_ERRORS):
            logger.warning("Answering 503 for %s: %s: %s", request.path, type(exception).__name__, exception)
            return service_unavailable_response()
        return None
