from django.contrib import admin

from videos.models import Comment, Video


@admin.register(Video)
class VideoAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "view_count", "like_count", "comment_count", "created_at", "deleted_at")
    search_fields = ("title", "owner__username", "id")
    list_filter = ("deleted_at",)
    list_select_related = ("owner",)
    readonly_fields = ("view_count", "like_count", "comment_count", "remix_count", "glitch_count")
    raw_id_fields = ("owner", "remix_of")
    show_full_result_count = False


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("video", "user", "created_at")
    list_select_related = ("video", "user")
    raw_id_fields = ("video", "user")
