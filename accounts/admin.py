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

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        tokens_revoke(AuthToken.objects.filter(digest=obj.digest))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        tokens_revoke(queryset)
