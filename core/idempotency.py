"""`Idempotency-Key` for creates: a retried create answers the first result.

The key's row is reserved first (unique per user), the create runs, and its answer
is stored on the row; a retry replays it, a concurrent retry gets 409, and a key
reused with a different body is a 422. An uploaded file counts by its content (its
sha256, core.uploads), not its name: other bytes under the same name are a different
body, the same bytes under another name the same one. Used by every create endpoint
(contents, videos, AI jobs).
"""

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import NotAuthenticated, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import Conflict, UnprocessableEntity
from core.models import IdempotencyRecord
from core.uploads import content_digest

HEADER = "Idempotency-Key"
RESERVATION_TIMEOUT = timedelta(minutes=5)

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (a UUID is ideal). A retry with the same key and body answers the first result and creates nothing.",
)


def _field_value(value: object) -> str:
    # A file by its content: its name is the client's and is never stored (a file's
    # str() is its name, so until this a different video under the same name replayed
    # the first). Any other value as before, so that the other fingerprints stay.
    return f"sha256:{content_digest(value)}" if isinstance(value, UploadedFile) else str(value)


def _fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=_field_value) if hasattr(request.data, "keys") else repr(request.data)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def idempotent(request: Request, endpoint: str, create: Callable[[], Response]) -> Response:
    """Run `create` once per (user, Idempotency-Key); replay its answer afterwards.

    The key is reserved in its own short transaction, so that `create` (which may
    decode uploads or write to storage) runs outside any transaction. A retry while
    the first is still running gets 409 with Retry-After; a failed create frees the
    key; a reservation whose request died is freed after RESERVATION_TIMEOUT."""
    key = request.headers.get(HEADER)
    if key is None:
        return create()
    user = request.user
    if not user.is_authenticated:
        # Keys are kept per user: an endpoint open to anonymous callers cannot offer them.
        raise NotAuthenticated()
    key = key.strip()
    if not key or len(key) > 255:
        raise ValidationError({HEADER: ["Must be 1 to 255 characters."]})
    fingerprint = _fingerprint(request)
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                user=user, key=key, endpoint=endpoint, request_fingerprint=fingerprint
            )
    except IntegrityError:
        record = IdempotencyRecord.objects.get(user=user, key=key)
        if record.endpoint != endpoint or record.request_fingerprint != fingerprint:
            raise UnprocessableEntity(f"This {HEADER} was already used for a different request; use a new key.") from None
        if record.status_code is not None:
            return Response(record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"})
        if record.created_at > timezone.now() - RESERVATION_TIMEOUT:
            raise Conflict(f"A request with this {HEADER} is still being processed; retry shortly.", wait=1) from None
        # The first request died mid-way: free the key and run this one.
        IdempotencyRecord.objects.filter(id=record.id, status_code__isnull=True).delete()
        return idempotent(request, endpoint, create)
    try:
        response = create()
    except BaseException:
        record.delete()
        raise
    if response.status_code >= 400:
        # Errors are not remembered: a corrected retry may succeed.
        record.delete()
        return response
    IdempotencyRecord.objects.filter(id=record.id).update(status_code=response.status_code, response_body=response.data)
    return response


def prune_idempotency_records(older_than: timedelta) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
