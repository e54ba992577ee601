"""REST API for the machines: POST /api/v1/equipment/telemetry/ with the header X-Equipment-Key."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from fitness.serializers import StrictFieldsMixin
from monitoring.models import Equipment, TelemetryReading
from monitoring.selectors import equipment_by_api_key
from monitoring.services import telemetry_ingest

EQUIPMENT_KEY_HEADER = "X-Equipment-Key"


class EquipmentKeyAuthentication(BaseAuthentication):
    """A machine authenticates with its API key; `request.auth` is then the Equipment."""

    def authenticate(self, request):
        key = request.headers.get(EQUIPMENT_KEY_HEADER)
        if key is None:
            return None  # -> 401 "credentials were not provided"
        if not 1 <= len(key) <= 200:
            raise AuthenticationFailed(f"The {EQUIPMENT_KEY_HEADER} header is empty or too long.")
        equipment = equipment_by_api_key(api_key=key)
        if equipment is None:
            raise AuthenticationFailed("Unknown equipment key.")
        return AnonymousUser(), equipment

    def authenticate_header(self, request) -> str:
        return f'EquipmentKey header="{EQUIPMENT_KEY_HEADER}"'  # makes a missing key a 401, not a 403


class IsActiveEquipment(BasePermission):
    def has_permission(self, request, view) -> bool:
        equipment = request.auth
        if not isinstance(equipment, Equipment):
            return False
        if not equipment.is_active:
            raise PermissionDenied("This equipment is deactivated; its telemetry is refused.")
        return True


class EquipmentKeyScheme(OpenApiAuthenticationExtension):
    target_class = EquipmentKeyAuthentication
    name = "equipmentKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": EQUIPMENT_KEY_HEADER}


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO-8601 time with its UTC offset: a machine's local time without one is ambiguous."""

    def to_internal_value(self, value):
        if isinstance(value, str) and (parsed := parse_datetime(value)) is not None and parsed.tzinfo is None:
            self.fail("naive")
        return super().to_internal_value(value)

    default_error_messages = {"naive": "Give the UTC offset, e.g. 2026-11-25T10:00:00Z."}


class TelemetryReadingSerializer(StrictFieldsMixin, serializers.Serializer):
    recorded_at = AwareDateTimeField(help_text="When the machine took the reading (ISO-8601 with offset).")
    error_code = serializers.RegexField(
        r"^[A-Za-z0-9_-]{1,16}$", allow_null=True, required=False, default=None,
        help_text="The machine's error code, e.g. E21; null when there is none.",
        error_messages={
            "invalid": "An error code is 1 to 16 letters, digits, '-' or '_'.",
            "blank": "Send null when there is no error code, not an empty string.",
        },
    )
    temperature_c = serializers.FloatField(min_value=-40, max_value=150, allow_null=True, required=False, default=None)
    vibration_g = serializers.FloatField(min_value=0, max_value=50, allow_null=True, required=False, default=None)
    door_open = serializers.BooleanField(allow_null=True, required=False, default=None)
    cycle_state = serializers.ChoiceField(
        choices=TelemetryReading.CycleState.choices, allow_null=True, required=False, default=None
    )

    def validate_recorded_at(self, value):
        now = timezone.now()
        if value > now + timedelta(seconds=settings.MONITORING_MAX_CLOCK_SKEW_SECONDS):
            raise ValidationError(f"The reading is from the future (the server's time is {now:%Y-%m-%dT%H:%M:%SZ}).")
        if value < now - timedelta(seconds=settings.MONITORING_MAX_READING_AGE_SECONDS):
            raise ValidationError("The reading is too old to be accepted.")
        return value

    def validate_error_code(self, value):
        return value.upper() if value else None


class OpenedFaultSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    rule = serializers.CharField()
    code = serializers.CharField()
    severity = serializers.CharField()
    message = serializers.CharField()


class TelemetryAcceptedSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Readings stored.")
    faults_opened = OpenedFaultSerializer(many=True, source="opened", help_text="Faults these readings opened.")


TELEMETRY_BODY = PolymorphicProxySerializer(
    component_name="TelemetryBody",
    serializers=[TelemetryReadingSerializer, TelemetryReadingSerializer(many=True)],
    resource_type_field_name=None,
    many=False,
)


class TelemetryView(APIView):
    """A machine reports one reading, or a list of buffered readings."""

    authentication_classes = [EquipmentKeyAuthentication]
    permission_classes = [IsActiveEquipment]

    @extend_schema(
        operation_id="equipment_telemetry",
        summary="Report telemetry (one reading or a list)",
        description=(
            "Stores the readings and opens a fault for every fault rule they trip, unless that fault "
            "is already open; each fault opened is alerted to the branch owner. The whole request is "
            "checked before anything is stored: one bad reading refuses all of them. The errors of a "
            "list are an object keyed by the index of each bad reading, e.g. `{\"2\": {\"vibration_g\": [...]}}`."
        ),
        request=TELEMETRY_BODY,
        responses={
            202: TelemetryAcceptedSerializer,
            400: OpenApiResponse(description="Malformed, out of range, unknown field, naive or future time."),
            401: OpenApiResponse(description="Missing or unknown X-Equipment-Key."),
            403: OpenApiResponse(description="The equipment is deactivated."),
            415: OpenApiResponse(description="The body is not JSON."),
        },
        examples=[OpenApiExample("one reading", request_only=True, value={
            "recorded_at": "2026-11-25T10:00:00Z", "error_code": "E21", "temperature_c": 41.5,
            "vibration_g": 0.3, "door_open": False, "cycle_state": "washing",
        })],
    )
    def post(self, request):
        data = request.data
        many = isinstance(data, list)
        if not many and not isinstance(data, dict):
            raise ValidationError({"non_field_errors": ["Send one reading (a JSON object) or a list of them."]})
        if many and not 1 <= len(data) <= settings.MONITORING_TELEMETRY_MAX_READINGS:
            raise ValidationError({"non_field_errors": [
                f"Send 1 to {settings.MONITORING_TELEMETRY_MAX_READINGS} readings per request, not {len(data)}."
            ]})
        serializer = TelemetryReadingSerializer(data=data, many=many)
        serializer.is_valid(raise_exception=True)
        readings = serializer.validated_data if many else [serializer.validated_data]
        result = telemetry_ingest(equipment=request.auth, readings=readings)
        return Response(TelemetryAcceptedSerializer(result).data, status=status.HTTP_202_ACCEPTED)
