import uuid
from typing import cast

from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from knox.models import AuthToken
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import BearerTokenAuthentication
from accounts.forms import LoginForm
from accounts.login_throttle import login_refusal
from accounts.serializers import (
    MeSerializer,
    TokenEntrySerializer,
    TokenPageSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from accounts.services import token_issue, token_public_id, token_revoke_by_id, tokens_of, tokens_revoke
from core.errors import ProblemDetailsSerializer
from core.pagination import NewestFirstPagination


class TokenView(APIView):
    """Exchange a username and password for a bearer token; DELETE revokes the token used.
    Failed logins are throttled per account and per client, successful ones per client
    (accounts.login_throttle)."""

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    # Bearer only: a session cookie must not make this endpoint a CSRF target.
    authentication_classes = [BearerTokenAuthentication]

    # auth=[] drops the 401 that drf-standardized-errors documents for authenticated
    # operations; wrong credentials are a 401 here all the same.
    @extend_schema(
        request=TokenRequestSerializer, responses={201: TokenSerializer, 401: ProblemDetailsSerializer}, auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            # Refused unchecked (the failures' or the logins' rate): 429 with Retry-After.
            refusal = login_refusal(request, data.validated_data["username"])
            if refusal is not None:
                raise refusal
            raise AuthenticationFailed("Wrong username or password.")
        instance, token = token_issue(user=user)
        return Response(TokenSerializer({"token": token, "expiry": instance.expiry}).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None, responses={204: None}, tags=["auth"],
        description="Revoke the token this request uses: it is refused from now on, the streams it opened are "
        "closed (WebSocket close code 4401) and the tickets it issued are refused.",
    )
    def delete(self, request: Request) -> Response:
        # The AuthToken row BearerTokenAuthentication found, this view's only authentication.
        token = cast(AuthToken, request.auth)
        tokens_revoke(AuthToken.objects.filter(digest=token.digest))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenPagination(NewestFirstPagination):
    ordering = ("-created", "-digest")


class TokenListView(APIView):
    """The caller's tokens, so that one left on a lost device can be revoked from
    another. Bearer only, as TokenView: no session cookie makes it a CSRF target."""

    authentication_classes = [BearerTokenAuthentication]

    @extend_schema(
        responses={200: TokenPageSerializer}, parameters=[OpenApiParameter("cursor", str)], tags=["auth"],
        description="Your tokens that have not expired, newest first: an id for each (not the token itself), "
        "when it was issued, when it expires, and whether it is the one this request uses.",
    )
    def get(self, request: Request) -> Response:
        calling = cast(AuthToken, request.auth)
        paginator = TokenPagination()
        page = paginator.paginate_queryset(tokens_of(request.user), request, view=self) or []
        entries = [
            {"id": token_public_id(t.digest), "created": t.created, "expiry": t.expiry, "current": t.digest == calling.digest}
            for t in page
        ]
        return paginator.get_paginated_response(TokenEntrySerializer(entries, many=True).data)


class TokenDetailView(APIView):
    authentication_classes = [BearerTokenAuthentication]

    @extend_schema(
        request=None, responses={204: None}, tags=["auth"],
        description="Revoke one of your tokens (the one this request uses too, if named): it is refused from now "
        "on, the streams it opened are closed and the tickets it issued are refused. Another user's token id "
        "is answered as a missing one.",
    )
    def delete(self, request: Request, token_id: uuid.UUID) -> Response:
        if not token_revoke_by_id(user=request.user, token_id=token_id):
            raise Http404("You have no token with that id.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """Who the credentials belong to: the cheapest authenticated call (no SQL once the
    token is cached), for a client checking its token and for the server benchmark."""

    @extend_schema(responses={200: MeSerializer}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


class LoginPageView(LoginView):
    """Django's login page with the throttled form; a throttled attempt answers 429."""

    form_class = LoginForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error("__all__", code="throttled"):
            response.status_code = 429
        return response
