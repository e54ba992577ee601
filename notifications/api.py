"""REST API of the apps: register devices for pushes, read one's notifications."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.models import DeviceToken, Notification
from notifications.selectors import notification_list_for
from notifications.services import DeviceTokenInUse, device_register, device_unregister


class TokenInUse(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "token_in_use"


TOKEN_IN_USE = (
    "This registration token is registered to another account's device. Sign out there first, or delete the "
    "token with the FCM SDK (deleteToken) and register the new one the SDK gives."
)


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeviceToken
        fields = ["token", "platform", "is_active", "created_at", "updated_at"]
        read_only_fields = ["is_active", "created_at", "updated_at"]
        # uniqueness is the service's business: registering a known token again is fine
        extra_kwargs = {"token": {"validators": [], "help_text": "The FCM registration token of the app."}}


class DeviceTokenSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=1024)


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "data", "status", "created_at"]


class DeviceView(APIView):
    """The apps register their push token at login and remove it at logout."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="devices_register",
        summary="Register this device for push notifications",
        request=DeviceSerializer,
        responses={
            201: DeviceSerializer,
            200: OpenApiResponse(DeviceSerializer, description=(
                "The token was registered before: by you, or by someone who signed out of it (now yours)."
            )),
            400: OpenApiResponse(description="No token, or an unknown platform."),
            401: OpenApiResponse(description="Missing or wrong token."),
            409: OpenApiResponse(description=(
                "The token is an active device of another account; it stays theirs. Delete it with the FCM SDK "
                "(deleteToken) and register the new one."
            )),
        },
    )
    def post(self, request):
        serializer = DeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            device, created = device_register(user=request.user, **serializer.validated_data)
        except DeviceTokenInUse as exc:
            raise TokenInUse({"token": [serializers.ErrorDetail(TOKEN_IN_USE, code="token_in_use")]}) from exc
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(DeviceSerializer(device).data, status=answer)

    @extend_schema(
        operation_id="devices_unregister",
        summary="Stop push notifications to this device",
        request=DeviceTokenSerializer,
        responses={
            204: OpenApiResponse(description="No more pushes go to this device."),
            400: OpenApiResponse(description="No token given."),
            401: OpenApiResponse(description="Missing or wrong token."),
            404: OpenApiResponse(description="The token is not registered to you."),
        },
    )
    def delete(self, request):
        serializer = DeviceTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not device_unregister(user=request.user, token=serializer.validated_data["token"]):
            raise NotFound("This token is not registered to you.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationListView(ListAPIView):
    """The user's notifications (fault alerts, recommendations), newest first."""

    permission_classes = [IsAuthenticated]
    serializer_class = NotificationSerializer

    def get_queryset(self):
        return notification_list_for(user=self.request.user)

    @extend_schema(operation_id="notifications_list", summary="Your notifications, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
