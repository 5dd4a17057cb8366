from django.urls import path

from moderation import views

urlpatterns = [
    path("v1/admin/videos/batch-delete", views.BatchDeleteVideosView.as_view(), name="admin-videos-batch-delete"),
    path("v1/blocks/batch", views.BatchBlockView.as_view(), name="blocks-batch"),
    path("v1/blocks", views.BlockListView.as_view(), name="block-list"),
    path("v1/blocks/<uuid:user_id>", views.BlockDetailView.as_view(), name="block-detail"),
]
