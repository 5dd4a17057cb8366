from django.urls import path

from notifications import views

urlpatterns = [
    path("v1/notifications/", views.NotificationListView.as_view(), name="notification-list"),
    path("v1/notifications/batch-mark-read", views.BatchMarkReadView.as_view(), name="notification-batch-mark-read"),
]
