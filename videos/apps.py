from django.apps import AppConfig


class VideosConfig(AppConfig):
    name = "videos"

    def ready(self) -> None:
        from core.media import register_media
        from videos.selectors import video_media_type

        # The folders of Video.file and Video.thumbnail (their upload_to).
        register_media("videos", video_media_type)
        register_media("thumbnails", video_media_type)
