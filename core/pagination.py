"""The cursor pagination every list shares: newest first, `?page_size=` up to 100."""

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model, QuerySet
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.response import Response

if TYPE_CHECKING:
    # Not at run time: importing DRF's views loads its settings, and with them the apps'
    # authentication classes (core imports no app, not even through DRF).
    from rest_framework.request import Request
    from rest_framework.views import APIView

INVALID_CURSOR = "Invalid cursor: use the `next` (or `previous`) link of a page as it is."


class NewestFirstPagination(CursorPagination):
    """A cursor is the client's to send back, and so to forge: one that does not decode,
    or whose position is not a value of the ordering's field (`p=x` where a timestamp
    belongs), is a 400 problem on `cursor`, never a 500 from the query it would filter."""

    page_size = 20
    max_page_size = 100
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")
    invalid_cursor_message = INVALID_CURSOR

    _model: type[Model] | None = None

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: "Request", view: "APIView | None" = None
    ) -> list[Any] | None:
        self._model = getattr(queryset, "model", None)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: "Request") -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:  # DRF's answer for a cursor that does not decode
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}, code="invalid") from None
        if cursor is not None and cursor.position is not None and not self._valid_position(str(cursor.position)):
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}, code="invalid")
        return cursor

    def _valid_position(self, position: str) -> bool:
        """Whether the position is a value the first ordering field can be compared
        with, as _get_position_from_instance wrote it (str of the field's value)."""
        if "\x00" in position:  # PostgreSQL takes no NUL in any text it is sent
            return False
        if self._model is None:
            return True
        try:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:  # a related lookup: left to the query
            return True
        if not isinstance(field, Field):
            return True
        try:
            value = field.to_python(position)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            return False
        # Positions are written with their offset (the fields are aware): a naive one is forged.
        return not (isinstance(value, datetime.datetime) and value.tzinfo is None)

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link()})
