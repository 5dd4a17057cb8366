from django.apps import AppConfig


class ContentsConfig(AppConfig):
    name = "contents"

    def ready(self) -> None:
        # What the shared layer must know of contents, told here so that realtime
        # imports no app: who may read a `channel:<id>` stream, and how the channel
        # streams are documented in the OpenAPI schema.
        from contents.lifecycle import CONTENT, CONTENT_STATUS_UPDATE, PROCESSING_COMPLETE, PROCESSING_ERROR
        from contents.models import ACTIVE_STAGES
        from contents.schema import stream_paths
        from contents.selectors import channel_stream_readable
        from core.metrics import register_event_type, register_job_stages
        from realtime.access import register_stream_access
        from realtime.schema import register_stream_paths

        register_stream_access("channel", channel_stream_readable)
        register_stream_paths(stream_paths)
        # The unchanged status poll, answered ahead of the framework (contents.fast_status).
        from contents.fast_status import PATH, ROUTE, unchanged_status
        from core.fast_path import register_fast_path

        register_fast_path(ROUTE, PATH, unchanged_status)
        # What the metrics count from 0 (core.metrics): the channel streams' events and
        # the pipeline's stages.
        for event_type in (CONTENT_STATUS_UPDATE, PROCESSING_COMPLETE, PROCESSING_ERROR):
            register_event_type("channel", event_type)
        register_job_stages(CONTENT.job_label, ACTIVE_STAGES)
