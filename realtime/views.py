from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.tickets import ticket_issue


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Single use; pass as `?ticket=` on a WebSocket or SSE URL.")
    expires_at = serializers.DateTimeField()


class TicketView(APIView):
    @extend_schema(request=None, responses={201: TicketSerializer}, tags=["realtime"])
    def post(self, request: Request) -> Response:
        ticket, expires_at = ticket_issue(user_id=request.user.id)
        return Response(TicketSerializer({"ticket": ticket, "expires_at": expires_at}).data, status=status.HTTP_201_CREATED)
