"""Moderation's admin: its own records, blocks, and its actions on the users' and
videos' admin pages. moderation sits on top, so it adds those actions to the admins
accounts and videos register (which know nothing of moderation), by registering
subclasses of them in their place."""

from django.contrib import admin

from accounts.admin import UserAdmin
from accounts.models import Block, User
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


class ModeratedVideoAdmin(VideoAdmin):
    actions = [delete_videos_with_reason]


admin.site.unregister(User)
admin.site.register(User, ModeratedUserAdmin)
admin.site.unregister(Video)
admin.site.register(Video, ModeratedVideoAdmin)
