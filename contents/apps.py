from django.apps import AppConfig


class ContentsConfig(AppConfig):
    name = "contents"

    def ready(self) -> None:
        # What the shared layer must know of contents, told here so that realtime
        # imports no app: who may read a `channel:<id>` stream, and how the channel
        # streams are documented in the OpenAPI schema.
        from contents.schema import stream_paths
        from contents.selectors import channel_stream_readable
        from realtime.access import register_stream_access
        from realtime.schema import register_stream_paths

        register_stream_access("channel", channel_stream_readable)
        register_stream_paths(stream_paths)
