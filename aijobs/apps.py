from django.apps import AppConfig


class AijobsConfig(AppConfig):
    name = "aijobs"
    verbose_name = "AI jobs and credits"

    def ready(self) -> None:
        from aijobs.selectors import job_result_media_type
        from core.media import register_media

        # The folder of AIJob.result_file (its upload_to).
        register_media("ai-results", job_result_media_type)
