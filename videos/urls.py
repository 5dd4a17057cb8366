from django.urls import path

from videos import views

urlpatterns = [
    path("v1/videos", views.VideoCreateView.as_view(), name="video-create"),
    path("v1/videos/feed", views.VideoFeedView.as_view(), name="video-feed"),
    path("v1/videos/trending", views.VideoTrendingView.as_view(), name="video-trending"),
    path("v1/videos/batch-metadata", views.VideoBatchMetadataView.as_view(), name="video-batch-metadata"),
    path("v1/videos/<uuid:video_id>", views.VideoDetailView.as_view(), name="video-detail"),
    path("v1/videos/<uuid:video_id>/view", views.VideoViewView.as_view(), name="video-view"),
    path("v1/videos/<uuid:video_id>/like", views.VideoLikeView.as_view(), name="video-like"),
    path("v1/videos/<uuid:video_id>/comments", views.VideoCommentsView.as_view(), name="video-comments"),
]
