"""Sign-in and sign-out of the apps: `POST /api/v1/auth/token/`, `…/logout/`, `…/logout-all/`."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import TokenAuthentication
from accounts.services import token_issue, token_revoke, token_revoke_all
from accounts.signals import signed_out_everywhere


class IssuedTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`. Shown only this once.")
    expiry = serializers.DateTimeField(help_text="When the token stops working; then sign in again.")


class TokenObtainView(APIView):
    """Trade a username and password for a new API token (the mobile app's sign-in).

    The request is DRF's `obtain_auth_token` one (form or JSON `username`, `password`), so
    apps built against it keep working; the answer gains `expiry`. Rate limits are the
    view's `throttle_classes`.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [FormParser, MultiPartParser, JSONParser]

    @extend_schema(
        operation_id="auth_token_obtain",
        summary="Sign in: a new API token for a username and password",
        description=(
            "Each sign-in issues a new token, good until `expiry` (AUTH_TOKEN_TTL_HOURS after it was "
            "issued; using it does not extend it). The server keeps only a hash of it. Sign out "
            "with `POST /api/v1/auth/logout/` (this token) or `/api/v1/auth/logout-all/` (every token)."
        ),
        request={"application/x-www-form-urlencoded": AuthTokenSerializer, "multipart/form-data": AuthTokenSerializer,
                 "application/json": AuthTokenSerializer},
        responses={
            200: IssuedTokenSerializer,
            400: OpenApiResponse(description="Wrong username or password, or one of them missing."),
            429: OpenApiResponse(description="Too many attempts for this username or from this address "
                                             "(fitness/throttling.py), whatever the password; see Retry-After."),
        },
        examples=[OpenApiExample("signed in", response_only=True, status_codes=["200"], value={
            "token": "9f1c2e…64 hex characters", "expiry": "2026-12-25T10:00:00Z",
        })],
    )
    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        issued = token_issue(user=user)
        user_logged_in.send(sender=type(user), request=request, user=user)
        return Response(IssuedTokenSerializer({"token": issued.key, "expiry": issued.expiry}).data)


class LogoutView(APIView):
    """Sign out this app: the token of the request stops working."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_logout", summary="Sign out: revoke the token of this request", request=None,
        responses={204: OpenApiResponse(description="The token no longer works."),
                   401: OpenApiResponse(description="Missing, wrong, expired or already revoked token.")},
    )
    def post(self, request):
        token_revoke(token=request.auth)
        user_logged_out.send(sender=type(request.user), request=request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """Sign out everywhere (e.g. a lost phone): every token of the user stops working, and no
    device of theirs gets pushes any more (their apps register again at the next sign-in)."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_logout_all", summary="Sign out everywhere: revoke every token of the user",
        request=None,
        responses={204: OpenApiResponse(description=(
                       "None of the user's tokens works any more, and none of their devices gets pushes."
                   )),
                   401: OpenApiResponse(description="Missing, wrong, expired or already revoked token.")},
    )
    def post(self, request):
        with transaction.atomic():  # the tokens and the devices, together or not at all
            token_revoke_all(user=request.user)
            signed_out_everywhere.send(sender=type(request.user), user=request.user)
        user_logged_out.send(sender=type(request.user), request=request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
