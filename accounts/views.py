from typing import cast

from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
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
from accounts.serializers import MeSerializer, TokenRequestSerializer, TokenSerializer
from accounts.services import token_issue, tokens_revoke
from core.errors import ProblemDetailsSerializer


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

    @extend_schema(request=None, responses={204: None}, tags=["auth"])
    def delete(self, request: Request) -> Response:
        # The AuthToken row BearerTokenAuthentication found, this view's only authentication.
        token = cast(AuthToken, request.auth)
        tokens_revoke(AuthToken.objects.filter(digest=token.digest))
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
