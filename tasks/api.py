"""REST API of laundry tasks: helpers register them and follow their reading (the mobile
app); branch owners see their branches' tasks and confirm or correct the readings."""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from branches.selectors import helper_branch, owns_a_branch
from fitness.serializers import StrictFieldsMixin
from messaging.contracts import LABEL_VOCABULARY
from messaging.correlation import bind_log_context
from tasks.models import LaundryTask, Reading
from tasks.photos import PhotoRejected, PhotoTooLarge
from tasks.selectors import task_get_visible, task_list_visible
from tasks.services import (
    IdempotencyKeyReused,
    InvalidLabels,
    TaskNotConfirmable,
    TaskNotFound,
    task_confirm,
    task_submit,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
MULTIPART_SLACK_BYTES = 64 * 1024  # form boundaries and the note around the photo

logger = logging.getLogger(__name__)


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "photo_too_large"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class ReadingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reading
        fields = ["labels", "confidences", "model_version", "inference_ms", "created_at"]


class TaskUrlMixin:
    """The task's own API URL, absolute when the request is known."""

    def get_url(self, task: LaundryTask) -> str:
        return reverse("api-v1:task-detail", kwargs={"task_id": task.pk}, request=self.context.get("request"))


class ConfirmationSerializer(serializers.ModelSerializer):
    labels = serializers.JSONField(source="confirmed_labels", help_text="The labels the owner confirmed.")
    confirmed_by = serializers.IntegerField(source="confirmed_by_id", help_text="The owner's user id.")

    class Meta:
        model = LaundryTask
        fields = ["labels", "confirmed_by", "confirmed_at"]


class TaskSerializer(TaskUrlMixin, serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    reading = ReadingSerializer(read_only=True, allow_null=True)
    confirmation = serializers.SerializerMethodField()

    class Meta:
        model = LaundryTask
        fields = [
            "id", "url", "status", "branch", "note", "photo_content_type", "photo_size",
            "failure_reason", "reading", "confirmation", "created_at", "updated_at",
        ]

    @extend_schema_field(ConfirmationSerializer(allow_null=True))
    def get_confirmation(self, task: LaundryTask) -> dict | None:
        """The owner's confirmation, once the task is confirmed; else null."""
        return ConfirmationSerializer(task).data if task.confirmed_at else None


class TaskAcceptedSerializer(TaskUrlMixin, serializers.ModelSerializer):
    """The 202 answer: just enough to follow the task (its reading comes later).

    The schema of the answer; the upload writes the same body with `accepted_body`.
    """

    url = serializers.SerializerMethodField()

    class Meta:
        model = LaundryTask
        fields = ["id", "url", "status", "created_at"]


_CREATED_AT = serializers.DateTimeField()


def accepted_body(task: LaundryTask, request) -> dict:
    """TaskAcceptedSerializer(task).data, written out: a ModelSerializer builds its fields from the
    model on every instance, about 0.4 ms of the upload's CPU (benchmarks/api_submit.py) for four
    values. tests/tasks/test_api_submit.py holds the two to the same body."""
    return {
        "id": task.pk,
        "url": reverse("api-v1:task-detail", kwargs={"task_id": task.pk}, request=request),
        "status": task.status,
        "created_at": _CREATED_AT.to_representation(task.created_at),
    }


class TaskSubmitSerializer(StrictFieldsMixin, serializers.Serializer):
    photo = serializers.FileField(
        help_text=(
            f"JPEG, PNG or WebP photo of the laundry, at most {settings.PHOTO_MAX_BYTES // 1_000_000} MB "
            f"and {settings.PHOTO_MAX_PIXELS // 1_000_000} megapixels."
        ),
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class TaskConfirmSerializer(StrictFieldsMixin, serializers.Serializer):
    labels = serializers.DictField(
        child=serializers.CharField(max_length=50), required=False, allow_empty=False,
        help_text=(
            "The corrected labels, with the same label spaces as the reading, e.g. "
            '{"garment": "towel", "condition": "stained"}. Leave the body empty to confirm the reading as it is. '
            + "Known labels: "
            + "; ".join(f"{head}: {', '.join(labels)}" for head, labels in LABEL_VOCABULARY.items())
            + "."
        ),
    )


def _helper_branch_or_403(request):
    branch = helper_branch(user=request.user)
    if branch is None:
        raise PermissionDenied("Only helpers of a branch can register tasks.")
    return branch


def _helper_or_owner_or_403(request) -> None:
    if helper_branch(user=request.user) is None and not owns_a_branch(user=request.user):
        raise PermissionDenied("Only helpers and owners of a branch can use the task API.")


STATUS_FILTER = OpenApiParameter(
    "status", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False, enum=LaundryTask.Status.values,
    description="Only tasks in this status, e.g. `analyzed` for the readings that wait for a confirmation.",
)


class TaskListCreateView(ListAPIView):
    """Tasks: a helper registers one (`POST`); helpers and owners list theirs (`GET`)."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = TaskSerializer
    body_size_checked_by_view = True  # post() refuses a body over PHOTO_MAX_BYTES unread (fitness.request_limits)

    def get_queryset(self):
        _helper_or_owner_or_403(self.request)
        tasks = task_list_visible(user=self.request.user)
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in LaundryTask.Status.values:
                known = ", ".join(LaundryTask.Status.values)
                raise ValidationError({"status": [f"Unknown status; use one of {known}."]})
            tasks = tasks.filter(status=wanted)
        return tasks

    @extend_schema(
        operation_id="tasks_list",
        summary="Tasks, newest first: a helper's own, or those of the owner's branches",
        parameters=[STATUS_FILTER],
        responses={
            200: TaskSerializer(many=True),
            400: OpenApiResponse(description="Unknown status."),
            403: OpenApiResponse(description="Neither a helper nor a branch owner."),
        },
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
        # the rest of this request's log lines (and its "request finished") name the task
        bind_log_context(task_id=submission.task.pk)
        logger.info(
            "task %s %s: branch %s, %s bytes of %s", submission.task.pk,
            "accepted" if submission.created else "accepted before (Idempotency-Key replayed)",
            branch.pk, submission.task.photo_size, submission.task.photo_content_type,
            extra={"task_id": submission.task.pk, "branch_id": branch.pk, "replayed": not submission.created},
        )
        body = accepted_body(submission.task, request)
        response = Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
        if not submission.created:
            response["Idempotent-Replayed"] = "true"
        return response


class TaskDetailView(APIView):
    """One task the user lists (a helper's own, or one of the owner's branches): its status and AI reading."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="tasks_retrieve",
        summary="A task's status, AI reading and confirmation",
        description=(
            "The same tasks as the list: a helper reads only the tasks they registered "
            "(a colleague's task is a 404), an owner any task of their branches."
        ),
        responses={200: TaskSerializer, 403: OpenApiResponse(description="Neither a helper nor a branch owner."),
                   404: OpenApiResponse(description="No such task among the user's: another helper's, "
                                                    "or outside the owner's branches.")},
    )
    def get(self, request, task_id: int):
        bind_log_context(task_id=task_id)
        _helper_or_owner_or_403(request)
        task = task_get_visible(user=request.user, task_id=task_id)
        if task is None:
            raise NotFound("No such task.")
        return Response(TaskSerializer(task, context={"request": request}).data)


class TaskConfirmView(APIView):
    """The branch owner confirms the AI reading of a task, or corrects it: training data."""

    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="tasks_confirm",
        summary="Confirm or correct a task's AI reading (branch owners)",
        description=(
            "An empty body confirms the reading as it is; `labels` corrects it. The task becomes "
            "`confirmed` and its photo with the confirmed labels becomes training data for the next "
            "model version. Confirming again with the same labels changes nothing."
        ),
        request=TaskConfirmSerializer,
        responses={
            200: TaskSerializer,
            400: OpenApiResponse(description="An unknown label or label space, or an unknown field, "
                                             "whatever the task's state (before any 409)."),
            401: OpenApiResponse(description="Missing or wrong token."),
            404: OpenApiResponse(description="No such task in the owner's branches."),
            409: OpenApiResponse(description="No reading yet, or already confirmed with other labels."),
            415: OpenApiResponse(description="The body is not JSON."),
        },
        examples=[OpenApiExample("correct the garment", request_only=True,
                                 value={"labels": {"garment": "towel", "condition": "stained"}})],
    )
    def post(self, request, task_id: int):
        bind_log_context(task_id=task_id)
        serializer = TaskConfirmSerializer(data=request.data if request.data else {})
        serializer.is_valid(raise_exception=True)
        try:
            confirmation = task_confirm(
                task_id=task_id, owner=request.user, labels=serializer.validated_data.get("labels")
            )
        except TaskNotFound as exc:
            raise NotFound("No such task in your branches.") from exc
        except TaskNotConfirmable as exc:
            raise Conflict({"status": [serializers.ErrorDetail(str(exc), code="not_confirmable")]}) from exc
        except InvalidLabels as exc:
            raise ValidationError({"labels": exc.errors}) from exc
        return Response(TaskSerializer(confirmation.task, context={"request": request}).data)
