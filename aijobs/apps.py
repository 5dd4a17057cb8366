from django.apps import AppConfig


class AijobsConfig(AppConfig):
    name = "aijobs"
    verbose_name = "AI jobs and credits"

    def ready(self) -> None:
        from aijobs.lifecycle import AI_JOB
        from aijobs.models import JobKind
        from aijobs.selectors import job_result_media_type
        from aijobs.services import AI_JOB_UPDATE
        from core.media import register_media
        from core.metrics import register_job_stages
        from realtime.schema import register_user_stream_event

        # The folder of AIJob.result_file (its upload_to).
        register_media("ai-results", job_result_media_type)
        # Published on the owner's user stream (WS /v1/ws), documented there.
        register_user_stream_event(AI_JOB_UPDATE)
        # The runner times each job as one stage named by its kind (core.metrics).
        register_job_stages(AI_JOB.job_label, JobKind.values)
