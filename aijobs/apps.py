from django.apps import AppConfig


class AijobsConfig(AppConfig):
    name = "aijobs"
    verbose_name = "AI jobs and credits"
