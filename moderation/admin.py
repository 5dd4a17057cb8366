"""Moderation's admin: its own records, blocks, and its actions on the users' and
videos' admin pages. moderation sits on top, so it adds those actions to the admins
accounts and videos register (which know nothing of moderation), by registering
subclasses of them in their place."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import Action, ActionLocation
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.admin import UserAdmin
from accounts.models import Block, User
from contents.services import contents_delete_of_providers
from moderation.admin_actions import block_users, delete_videos_with_reason
from moderation.models import Suspension, VideoDeletion
from videos.admin import VideoAdmin
from videos.models import Video


@admin.register(VideoDeletion)
class VideoDeletionAdmin(admin.ModelAdmin):
    list_display = ("video", "reason", "deleted_by", "deleted_at", "files_removed_at")
    list_select_related = ("video", "deleted_by")
    search_fields = ("reason", "video__title", "deleted_by__username")
    list_filter = ("files_removed_at",)
    show_full_result_count = False
    readonly_fields = ("video", "reason", "deleted_by", "deleted_at", "files_removed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A deletion record is written by the audited delete (the videos' action or the API), never by hand; the add page could only fail (500).
        return False


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("blocker", "blocked", "created_at")
    list_select_related = ("blocker", "blocked")
    search_fields = ("blocker__username", "blocked__username")
    raw_id_fields = ("blocker", "blocked")
    show_full_result_count = False


@admin.register(Suspension)
class SuspensionAdmin(admin.ModelAdmin):
    list_display = ("user", "reason", "suspended_by", "created_at")
    list_select_related = ("user", "suspended_by")
    search_fields = ("user__username",)
    raw_id_fields = ("user", "suspended_by")


# accounts' and videos' admins declare no actions of their own: these are all of theirs.
class ModeratedUserAdmin(UserAdmin):
    actions = [block_users]

    def has_block_permission(self, request: HttpRequest) -> bool:
        """Blocking on behalf of a user; suspension, the stronger grant, includes it."""
        return request.user.has_perm("moderation.block_user") or self.has_suspend_permission(request)

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("moderation.suspend_user")

    # The cascade would delete the contents the users provided (in anyone's channel)
    # behind the channels' totals: they go first, through the service that counts them.
    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        contents_delete_of_providers(provider_ids=[obj.pk])
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        contents_delete_of_providers(provider_ids=list(queryset.values_list("pk", flat=True)))
        super().delete_queryset(request, queryset)


class ModeratedVideoAdmin(VideoAdmin):
    """A video leaves only through the audited delete: hidden everywhere at once, with a
    reason and a VideoDeletion record, its files purged after the grace period. Django's
    own deletes (the "Delete selected" action, the object's delete page) would remove the
    row with no reason and no record, and leave its files behind, so they are gone; the
    audited action asks for the same videos.delete_video permission."""

    actions = [delete_videos_with_reason]

    def get_actions(self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST) -> dict[str, Action | None]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)
        return actions

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "show_delete": False})

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        self.message_user(request, 'Videos are deleted with a reason: select them and choose "Delete selected videos (with reason)".', messages.WARNING)
        return HttpResponseRedirect(reverse("admin:videos_video_changelist"))


admin.site.unregister(User)
admin.site.register(User, ModeratedUserAdmin)
admin.site.unregister(Video)
admin.site.register(Video, ModeratedVideoAdmin)
