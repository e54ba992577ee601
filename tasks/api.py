"""REST API for the helpers' mobile app: register laundry tasks and follow their reading."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from branches.selectors import helper_branch
from tasks.models import LaundryTask, Reading
from tasks.photos import PhotoRejected, PhotoTooLarge
from tasks.selectors import task_get_for_branch, task_list_for_helper
from tasks.services import IdempotencyKeyReused, task_submit

IDEMPOTENCY_HEADER = "Idempotency-Key"
MULTIPART_SLACK_BYTES = 64 * 1024  # form boundaries and the note around the photo


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "photo_too_large"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_reused"


class ReadingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reading
        fields = ["labels", "confidences", "model_version", "inference_ms", "created_at"]


class TaskUrlMixin:
    """The task's own API URL, absolute when the request is known."""

    def get_url(self, task: LaundryTask) -> str:
        return reverse("api-v1:task-detail", kwargs={"task_id": task.pk}, request=self.context.get("request"))


class TaskSerializer(TaskUrlMixin, serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    reading = ReadingSerializer(read_only=True, allow_null=True)

    class Meta:
        model = LaundryTask
        fields = [
            "id", "url", "status", "branch", "note", "photo_content_type", "photo_size",
            "failure_reason", "reading", "created_at", "updated_at",
        ]


class TaskAcceptedSerializer(TaskUrlMixin, serializers.ModelSerializer):
    """The 202 answer: just enough to follow the task (its reading comes later)."""

    url = serializers.SerializerMethodField()

    class Meta:
        model = LaundryTask
        fields = ["id", "url", "status", "created_at"]


class TaskSubmitSerializer(serializers.Serializer):
    photo = serializers.FileField(
        help_text=(
            f"JPEG, PNG or WebP photo of the laundry, at most {settings.PHOTO_MAX_BYTES // 1_000_000} MB "
            f"and {settings.PHOTO_MAX_PIXELS // 1_000_000} megapixels."
        ),
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")

    def validate(self, attrs):
        unexpected = set(self.initial_data) - set(self.fields)
        if unexpected:
            raise ValidationError({name: ["Unknown field."] for name in sorted(unexpected)})
        return attrs


def _helper_branch_or_403(request):
    branch = helper_branch(user=request.user)
    if branch is None:
        raise PermissionDenied("Only helpers of a branch can use the task API.")
    return branch


class TaskListCreateView(ListAPIView):
    """The helper's tasks: register one (`POST`), list them (`GET`)."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = TaskSerializer

    def get_queryset(self):
        _helper_branch_or_403(self.request)
        return task_list_for_helper(helper=self.request.user)

    @extend_schema(
        operation_id="tasks_list",
        summary="The helper's own tasks, newest first",
        responses={200: TaskSerializer(many=True), 403: OpenApiResponse(description="Not a helper.")},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="tasks_submit",
        summary="Register a laundry task with its photo",
        description=(
            "Stores the task and its photo and queues the AI reading, then answers at once "
            "(202), never waiting for the AI. Follow the task at its `url`. With an "
            "`Idempotency-Key` header, repeating the request returns the same task."
        ),
        request={"multipart/form-data": TaskSubmitSerializer},
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                description=(
                    "A client-chosen key (at most 200 characters); retries with the same key return the same task."
                ),
            )
        ],
        responses={
            202: TaskAcceptedSerializer,
            400: OpenApiResponse(description="No photo, not an image, corrupt, too many pixels, or an unknown field."),
            401: OpenApiResponse(description="Missing or wrong token."),
            403: OpenApiResponse(description="Not a helper."),
            409: OpenApiResponse(description="The Idempotency-Key was used for another photo."),
            413: OpenApiResponse(description="The photo is larger than the limit."),
            415: OpenApiResponse(description="The body is not multipart/form-data."),
        },
        examples=[OpenApiExample("accepted", response_only=True, status_codes=["202"], value={
            "id": 42, "url": "http://localhost:8000/api/v1/tasks/42/", "status": "submitted",
            "created_at": "2026-11-25T10:00:00Z",
        })],
    )
    def post(self, request, *args, **kwargs):
        branch = _helper_branch_or_403(request)
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.PHOTO_MAX_BYTES + MULTIPART_SLACK_BYTES:
            # refuse before reading the body
            raise PayloadTooLarge({"photo": [
                f"The request is {declared / 1_000_000:.1f} MB; a photo of at most "
                f"{settings.PHOTO_MAX_BYTES / 1_000_000:.0f} MB is accepted."
            ]})
        key = request.headers.get(IDEMPOTENCY_HEADER) or None
        if key is not None and not (1 <= len(key) <= 200 and key.isprintable()):
            raise ValidationError({IDEMPOTENCY_HEADER: ["Use at most 200 printable characters."]})
        serializer = TaskSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            submission = task_submit(
                helper=request.user, branch=branch, photo=serializer.validated_data["photo"],
                note=serializer.validated_data["note"], idempotency_key=key,
            )
        except PhotoTooLarge as exc:
            raise PayloadTooLarge({"photo": [str(exc)]}) from exc
        except PhotoRejected as exc:
            raise ValidationError({"photo": [serializers.ErrorDetail(str(exc), code=exc.code)]}) from exc
        except IdempotencyKeyReused as exc:
            raise Conflict({IDEMPOTENCY_HEADER: [str(exc)]}) from exc
        body = TaskAcceptedSerializer(submission.task, context={"request": request}).data
        response = Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
        if not submission.created:
            response["Idempotent-Replayed"] = "true"
        return response


class TaskDetailView(APIView):
    """One task of the helper's branch: its status, and the AI reading once there is one."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="tasks_retrieve",
        summary="A task's status and AI reading",
        responses={200: TaskSerializer, 403: OpenApiResponse(description="Not a helper."),
                   404: OpenApiResponse(description="No such task in the helper's branch.")},
    )
    def get(self, request, task_id: int):
        branch = _helper_branch_or_403(request)
        task = task_get_for_branch(branch=branch, task_id=task_id)
        if task is None:
            raise NotFound("No such task.")
        return Response(TaskSerializer(task, context={"request": request}).data)
