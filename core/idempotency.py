"""`Idempotency-Key` for creates: a retried create answers the first result.

The key's row is inserted in the same transaction as the create. A concurrent retry
blocks on the unique index until the first commits, then replays its answer; if the
first rolled back, the retry simply creates. A key reused with a different body is
a 422. Used by every create endpoint (contents, videos, AI jobs).
"""

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import UnprocessableEntity
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (a UUID is ideal). A retry with the same key and body answers the first result and creates nothing.",
)


def _fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str) if hasattr(request.data, "keys") else repr(request.data)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def idempotent(request: Request, endpoint: str, create: Callable[[], Response]) -> Response:
    """Run `create` once per (user, Idempotency-Key); replay its answer afterwards."""
    key = request.headers.get(HEADER)
    if key is None:
        return create()
    key = key.strip()
    if not key or len(key) > 255:
        raise ValidationError({HEADER: ["Must be 1 to 255 characters."]})
    fingerprint = _fingerprint(request)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=request.user, key=key, endpoint=endpoint, request_fingerprint=fingerprint
                )
        except IntegrityError:
            record = IdempotencyRecord.objects.get(user=request.user, key=key)
            if record.endpoint != endpoint or record.request_fingerprint != fingerprint:
                raise UnprocessableEntity(
                    f"This {HEADER} was already used for a different request; use a new key."
                ) from None
            return Response(record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"})
        response = create()
        if response.status_code >= 400:
            # Errors are not remembered: the transaction rolls back and a retry may succeed.
            transaction.set_rollback(True)
            return response
        record.status_code = response.status_code
        record.response_body = response.data
        record.save(update_fields=["status_code", "response_body"])
        return response


def prune_idempotency_records(older_than: timedelta) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
