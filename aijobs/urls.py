from django.urls import path

from aijobs import views

urlpatterns = [
    path("v1/ai/jobs", views.AIJobListCreateView.as_view(), name="aijob-list-create"),
    path("v1/ai/jobs/batch-status", views.AIJobBatchStatusView.as_view(), name="aijob-batch-status"),
    path("v1/ai/jobs/<uuid:job_id>", views.AIJobDetailView.as_view(), name="aijob-detail"),
    path("v1/ai/jobs/<uuid:job_id>/cancel", views.AIJobCancelView.as_view(), name="aijob-cancel"),
    path("v1/credits", views.CreditsView.as_view(), name="credits"),
]
