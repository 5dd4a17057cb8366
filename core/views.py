from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from core.health import service_health


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and the queue answer; 503 naming what does not."""
    checks = service_health()
    down = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "ok" if not down else "unavailable", "checks": checks, "down": down}
    return JsonResponse(body, status=503 if down else 200)
