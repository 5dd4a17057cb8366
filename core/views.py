from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from core.health import holds_metrics_token, readiness, service_health


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and the queue answer; 503 naming what does not."""
    checks = service_health()
    down = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "ok" if not down else "unavailable", "checks": checks, "down": down}
    return JsonResponse(body, status=503 if down else 200)


@require_GET
def livez(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Nothing else is checked: a process whose database
    is away is alive (restarting it would not bring the database back)."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 while this process should be sent requests; 503 while it drains
    (told to stop) or the database or the queue does not answer. Which one is down is
    said to everyone; how long each check took only to the metrics token's holder."""
    ready, body = readiness()
    if not holds_metrics_token(request.headers.get("Authorization", "")):
        body.pop("ms", None)
    return JsonResponse(body, status=200 if ready else 503)
