from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from knox.admin import AuthTokenAdmin as KnoxAuthTokenAdmin
from knox.models import AuthToken

from accounts.models import User
from accounts.services import tokens_revoke


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_staff", "is_active", "date_joined")
    search_fields = ("username", "email")
    list_filter = ("is_active", "is_staff")
    show_full_result_count = False

    # Deleting a user deletes their tokens by cascade: revoke them first, cache included.
    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        tokens_revoke(AuthToken.objects.filter(user=obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        tokens_revoke(AuthToken.objects.filter(user__in=queryset))
        super().delete_queryset(request, queryset)


admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(KnoxAuthTokenAdmin):
    """Deleting tokens here revokes them like a logout: the cached ones are refused too."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        # The key is a digest, text: an id with a NUL (`%00` in the URL) names no token,
        # and PostgreSQL would refuse the query with a 500.
        if "\x00" in object_id:
            return None
        return super().get_object(request, object_id, from_field)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        tokens_revoke(AuthToken.objects.filter(digest=obj.digest))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        tokens_revoke(queryset)
