"""Laundry tasks in the admin: the branch owner reviews the AI readings and confirms them.

Owners (staff users without model permissions, see branches.owner_admin) see the tasks of
their own branches; superusers see every task. Nobody adds, edits or deletes a task here:
tasks come from the helpers' app, and the one write is the confirmation, which goes through
tasks.services.task_confirm, the service behind POST /api/v1/tasks/{id}/confirm/ (it stores
the labels and publishes TaskConfirmedEvent through the outbox). The service also decides who
may confirm: the owner of the task's branch, so a superuser sees every task but confirms only
those of branches they own.

The photo is served by an owner-checked view (`<id>/photo/`, `?size=thumb` for a thumbnail)
that reads it through Django's storage API, so it works the same with the file system and
with S3, and never through a public media URL.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from PIL import Image, ImageOps, UnidentifiedImageError

from branches.owner_admin import BranchOwnerAccess, OwnBranchListFilter
from fitness.operator_admin import PermanentRecords
from messaging.contracts import LABEL_VOCABULARY
from tasks.models import LaundryTask
from tasks.services import InvalidLabels, TaskNotConfirmable, TaskNotFound, task_confirm

logger = logging.getLogger(__name__)

THUMBNAIL_BOX = (240, 240)  # pixels; the list shows it at 80 px, the change page at up to 240 px
PHOTO_MAX_AGE = 24 * 3600  # a stored photo never changes (a fresh name per upload)
CONFIRM_AS_READ = "_confirm_as_read"
CORRECT_AND_CONFIRM = "_correct_and_confirm"


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: after a POST, the browser GETs the change page (Django has no class of its own for it)."""

    status_code = 303


def ordered_label_spaces(labels: dict) -> list[str]:
    """The label spaces of a reading in the vocabulary's order (garment, condition), then any others."""
    return [head for head in LABEL_VOCABULARY if head in labels] + sorted(set(labels) - set(LABEL_VOCABULARY))


def describe_reading(reading) -> str:
    """e.g. "shirt 93% · stained 71%"."""
    confidences = reading.confidences or {}
    parts = []
    for head in ordered_label_spaces(reading.labels or {}):
        confidence = confidences.get(head)
        label = reading.labels[head]
        parts.append(f"{label} {confidence:.0%}" if isinstance(confidence, int | float) else str(label))
    return " · ".join(parts)


def describe_labels(labels: dict | None) -> str:
    """e.g. "shirt / stained"."""
    return " / ".join(str(labels[head]) for head in ordered_label_spaces(labels or {})) or "-"


def reading_of(task: LaundryTask):
    return getattr(task, "reading", None)  # the reverse one-to-one raises (an AttributeError) when absent


@dataclass(frozen=True)
class LabelChoice:
    head: str
    options: tuple[str, ...]
    selected: str
    confidence: float | None


@dataclass(frozen=True)
class ConfirmationPanel:
    """What the change page shows above the task: the confirmation form, or why there is none."""

    can_confirm: bool
    message: str
    choices: tuple[LabelChoice, ...] = ()
    action_url: str = ""


@admin.register(LaundryTask)
class LaundryTaskAdmin(PermanentRecords, BranchOwnerAccess, admin.ModelAdmin):
    list_display = ("thumbnail", "id", "branch", "helper", "status", "ai_reading", "model_version", "created_at")
    list_display_links = ("id",)
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), ("branch", OwnBranchListFilter))
    date_hierarchy = "created_at"
    search_fields = ("note", "helper__username")
    search_help_text = "Search the helpers' notes and user names."
    list_select_related = ("branch", "helper", "reading")
    ordering = ("-created_at", "-id")
    actions = ["confirm_as_read"]
    change_form_template = "admin/tasks/laundrytask/change_form.html"
    fieldsets = (
        (None, {"fields": ("photo_preview", "branch", "helper_name", "status", "failure_reason", "note",
                           "created_at", "updated_at")}),
        ("AI reading", {"fields": ("ai_reading", "model_version", "inference_time", "read_at")}),
        ("Owner's confirmation", {"fields": ("confirmed_labels_display", "confirmed_by_name", "confirmed_at")}),
        ("Photo file", {"fields": ("photo_content_type", "photo_size", "photo_sha256"), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "photo_preview", "branch", "helper_name", "status", "failure_reason", "note", "created_at", "updated_at",
        "ai_reading", "model_version", "inference_time", "read_at", "confirmed_labels_display", "confirmed_by_name",
        "confirmed_at", "photo_content_type", "photo_size", "photo_sha256",
    )

    # --- permissions: view for owners and superusers; the one write is the confirmation --------------
    # PermanentRecords: tasks come from the helpers' app, the confirmation (task_confirm) is their
    # only change, and a task, its photo and its confirmation are training data, never deleted.

    def has_confirm_permission(self, request, obj=None):
        """Owners confirm; task_confirm checks that the task is of a branch they own."""
        return self.is_branch_owner(request) and (obj is None or obj.branch.owner_id == request.user.pk)

    # --- columns and read-only fields -----------------------------------------------------------------

    def photo_url(self, task: LaundryTask) -> str:
        return reverse(f"{self.admin_site.name}:tasks_laundrytask_photo", args=[task.pk])

    @admin.display(description="photo")
    def thumbnail(self, task: LaundryTask) -> str:
        return self._photo_link(task, side=80)

    @admin.display(description="photo")
    def photo_preview(self, task: LaundryTask) -> str:
        return self._photo_link(task, side=240, caption="Open the full photo")

    def _photo_link(self, task: LaundryTask, *, side: int, caption: str = "") -> str:
        """The thumbnail (at most `side` px on screen) as a link that opens the full photo."""
        if not task.photo:
            return "-"
        url = self.photo_url(task)
        link = format_html(
            '<a href="{}" target="_blank" rel="noopener" title="Open the full photo">'
            '<img src="{}?size=thumb" alt="photo of task {}" loading="lazy" '
            'style="max-width:{}px;max-height:{}px;display:block"></a>',
            url, url, task.pk, side, side,
        )
        if caption:
            link += format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, caption)
        return link

    @admin.display(description="AI reading")
    def ai_reading(self, task: LaundryTask) -> str:
        reading = reading_of(task)
        return describe_reading(reading) if reading else "-"

    @admin.display(description="model version")
    def model_version(self, task: LaundryTask) -> str:
        reading = reading_of(task)
        return reading.model_version if reading else "-"

    @admin.display(description="inference time")
    def inference_time(self, task: LaundryTask) -> str:
        reading = reading_of(task)
        return f"{reading.inference_ms:.0f} ms" if reading else "-"

    @admin.display(description="read at")
    def read_at(self, task: LaundryTask) -> str:
        reading = reading_of(task)
        return date_format(timezone.localtime(reading.created_at), "DATETIME_FORMAT") if reading else "-"

    # user names as text: the user pages are not the owners' to open
    @admin.display(description="helper")
    def helper_name(self, task: LaundryTask) -> str:
        return task.helper.get_username()

    @admin.display(description="confirmed by")
    def confirmed_by_name(self, task: LaundryTask) -> str:
        return task.confirmed_by.get_username() if task.confirmed_by else "-"

    @admin.display(description="confirmed labels")
    def confirmed_labels_display(self, task: LaundryTask) -> str:
        return describe_labels(task.confirmed_labels) if task.confirmed_labels else "-"

    # --- the photo --------------------------------------------------------------------------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        own = [
            path("<path:object_id>/photo/", self.admin_site.admin_view(self.photo_view, cacheable=True),
                 name=f"{prefix}_photo"),
            path("<path:object_id>/confirm/", self.admin_site.admin_view(self.confirm_view),
                 name=f"{prefix}_confirm"),
        ]
        return own + super().get_urls()  # before the catch-all "<path:object_id>/" redirect

    def _visible_task(self, request, object_id: str) -> LaundryTask:
        """The task if the user may see it; Http404 otherwise (another branch's task looks absent)."""
        task = self.get_object(request, unquote(object_id))
        if task is None or not self.has_view_permission(request, task):
            raise Http404("No such task.")
        return task

    def photo_view(self, request, object_id: str):
        """The task's photo from storage; `?size=thumb` for a small JPEG of it."""
        task = self._visible_task(request, object_id)
        size = request.GET.get("size", "full")
        if size not in ("full", "thumb"):
            return HttpResponseBadRequest("size must be 'thumb' or 'full'.", content_type="text/plain")
        name = task.photo.name
        try:
            # no exists() first: on S3 that is one more round trip, and open() tells the same
            stored = task.photo.storage.open(name, "rb") if name else None
        except FileNotFoundError:
            stored = None
        if stored is None:
            raise Http404("The photo of this task is not in storage.")
        if size == "full":
            response = FileResponse(stored, content_type=task.photo_content_type or None)
        else:
            try:
                response = HttpResponse(self._thumbnail(stored), content_type="image/jpeg")
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
                logger.warning("no thumbnail of task %s (%s): %s", task.pk, name, exc)
                raise Http404("The photo of this task cannot be read.") from exc
        response["Cache-Control"] = f"private, max-age={PHOTO_MAX_AGE}"
        return response

    @staticmethod
    def _thumbnail(stored) -> bytes:
        with stored:
            image = Image.open(stored)
            image.draft("RGB", THUMBNAIL_BOX)  # a JPEG decodes at a fraction of its size, far faster
            image = ImageOps.exif_transpose(image)
            image.thumbnail(THUMBNAIL_BOX)
            if image.mode != "RGB":
                image = image.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()

    # --- the confirmation -------------------------------------------------------------------------------

    def confirmation_panel(self, request, task: LaundryTask) -> ConfirmationPanel:
        reading = reading_of(task)
        if task.status == LaundryTask.Status.CONFIRMED:
            by = task.confirmed_by.get_username() if task.confirmed_by else "the owner"
            return ConfirmationPanel(False, f"Confirmed as {describe_labels(task.confirmed_labels)} by {by}.")
        if task.status == LaundryTask.Status.FAILED:
            return ConfirmationPanel(
                False, f"The AI could not read this photo, so there is nothing to confirm: {task.failure_reason}"
            )
        if task.status != LaundryTask.Status.ANALYZED or reading is None:
            return ConfirmationPanel(
                False, f"There is no AI reading to confirm yet (the task is {task.status}); reload in a moment."
            )
        if not self.has_confirm_permission(request, task):
            return ConfirmationPanel(False, f"Only the owner of {task.branch} confirms its tasks.")
        choices = tuple(
            LabelChoice(
                head=head,
                options=tuple(LABEL_VOCABULARY.get(head, (reading.labels[head],))),
                selected=reading.labels[head],
                confidence=(reading.confidences or {}).get(head),
            )
            for head in ordered_label_spaces(reading.labels)
        )
        return ConfirmationPanel(
            True,
            f"The AI read {describe_reading(reading)} ({reading.model_version}). Confirm it as read, "
            "or choose the right labels and confirm them.",
            choices,
            reverse(f"{self.admin_site.name}:tasks_laundrytask_confirm", args=[task.pk]),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "POST" and (CONFIRM_AS_READ in request.POST or CORRECT_AND_CONFIRM in request.POST):
            return self.confirm_view(request, object_id)  # the confirmation form may post here too
        task = self.get_object(request, unquote(object_id))
        if task is not None and self.has_view_permission(request, task):
            extra_context = {**(extra_context or {}), "confirmation": self.confirmation_panel(request, task)}
        return super().change_view(request, object_id, form_url, extra_context)

    def confirm_view(self, request, object_id: str):
        """POST: confirm the reading as read (CONFIRM_AS_READ) or with the chosen labels (CORRECT_AND_CONFIRM)."""
        task = self._visible_task(request, object_id)
        change_url = reverse(f"{self.admin_site.name}:tasks_laundrytask_change", args=[task.pk])
        if request.method != "POST":
            return HttpResponseRedirect(change_url)
        back = HttpResponseSeeOther(change_url)
        if CORRECT_AND_CONFIRM in request.POST:
            reading = reading_of(task)
            heads = set(LABEL_VOCABULARY) | set(reading.labels if reading else ())
            labels = {head: request.POST[head] for head in sorted(heads) if head in request.POST}
        elif CONFIRM_AS_READ in request.POST:
            labels = None
        else:
            self.message_user(request, "Choose “Confirm as read” or “Correct and confirm”.", messages.ERROR)
            return back
        try:
            confirmation = task_confirm(task_id=task.pk, owner=request.user, labels=labels)
        except TaskNotFound:
            self.message_user(request, f"Only the owner of {task.branch} confirms its tasks.", messages.ERROR)
        except TaskNotConfirmable as exc:
            self.message_user(request, f"Not confirmed: {exc}", messages.ERROR)
        except InvalidLabels as exc:
            problems = "; ".join(f"{head}: {error}" for head, error in exc.errors.items())
            self.message_user(request, f"Not confirmed, the labels are not valid: {problems}", messages.ERROR)
        else:
            confirmed = describe_labels(confirmation.task.confirmed_labels)
            if confirmation.created:
                self.message_user(request, f"Task {task.pk} confirmed as {confirmed}.", messages.SUCCESS)
            else:
                self.message_user(request, f"Task {task.pk} was already confirmed as {confirmed}; nothing changed.",
                                  messages.INFO)
        return back

    @admin.action(description="Confirm selected as read", permissions=["confirm"])
    def confirm_as_read(self, request, queryset):
        confirmed, skipped = [], []
        for task_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                confirmation = task_confirm(task_id=task_id, owner=request.user)
            except TaskNotFound:
                skipped.append(f"task {task_id} (not of a branch you own)")
            except (TaskNotConfirmable, InvalidLabels) as exc:
                skipped.append(f"task {task_id} ({str(exc).removeprefix(f'Task {task_id} ').rstrip('.')})")
            else:
                if confirmation.created:
                    confirmed.append(task_id)
                else:
                    skipped.append(f"task {task_id} (already confirmed)")
        if confirmed:
            self.message_user(
                request, f"{len(confirmed)} task(s) confirmed as read: {', '.join(map(str, confirmed))}.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(request, f"{len(skipped)} skipped: {'; '.join(skipped)}.", messages.WARNING)
        if not confirmed and not skipped:
            self.message_user(request, "No task selected.", messages.WARNING)
