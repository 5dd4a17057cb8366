from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import problem_response
from realtime.credentials import request_credential
from realtime.tickets import ticket_issue


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Single use; pass as `?ticket=` on a WebSocket or SSE URL.")
    expires_at = serializers.DateTimeField()


class TicketView(APIView):
    @extend_schema(request=None, responses={201: TicketSerializer}, tags=["realtime"])
    def post(self, request: Request) -> Response:
        if request.user.pk is None:  # the default permission (IsAuthenticated) already refused
            raise NotAuthenticated()
        # The ticket opens a stream only while the credential that asked for it holds.
        ticket, expires_at = ticket_issue(user_id=request.user.pk, credential=request_credential(request))
        return Response(TicketSerializer({"ticket": ticket, "expires_at": expires_at}).data, status=status.HTTP_201_CREATED)


def websocket_only(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """A WebSocket path asked for over plain HTTP. The ASGI router sends upgrades to the
    consumers; anything else lands here, and is told how to connect (RFC 9110: a 426
    names the protocol to upgrade to) rather than that the path does not exist."""
    response = problem_response(
        426, "This is a WebSocket endpoint: connect with Upgrade: websocket.", code="upgrade_required"
    )
    response["Upgrade"] = "websocket"
    return response
