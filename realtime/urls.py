from django.urls import path

from realtime.views import TicketView

urlpatterns = [path("v1/realtime/tickets", TicketView.as_view(), name="realtime-tickets")]
