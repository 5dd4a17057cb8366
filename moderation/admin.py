from django.contrib import admin

from moderation.models import Block, Suspension, VideoDeletion


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
