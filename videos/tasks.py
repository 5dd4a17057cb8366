"""RQ entry points for videos: thin, calling the services."""


def flush_view_counts() -> int:
    from videos.services import video_views_flush

    return video_views_flush()
