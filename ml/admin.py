"""Operator views of the model lifecycle (superusers only): versions, training samples, retraining runs."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from fitness.operator_admin import OperatorOnly, PermanentRecords, RecordsOnly
from ml.models import ModelActivation, ModelVersion, RetrainingRun, TrainingSample
from ml.services import (
    NothingToRollBack,
    model_version_activate,
    model_version_rollback,
    model_version_rollback_target,
)


@admin.register(ModelVersion)
class ModelVersionAdmin(OperatorOnly, PermanentRecords, admin.ModelAdmin):
    """Trained versions are read-only records; operators promote one or roll back to the previous one.

    Both run the services behind `manage.py models promote|rollback`, so every activation is
    recorded in the activation history and the AI workers switch within seconds. Versions are
    never deleted (PermanentRecords): readings name their version.
    """

    list_display = (
        "version", "is_active", "outcome", "parent", "created_at", "activated_at", "exact_match_display",
        "garment_display", "condition_display", "train_size", "data_source",
    )
    list_filter = ("is_active", "outcome", "architecture")
    search_fields = ("version", "notes")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate"]
    change_list_template = "admin/ml/modelversion/change_list.html"

    def has_activate_permission(self, request):
        return self.is_operator(request)

    @admin.action(
        description="Promote the selected version to active (the AI workers switch to it within seconds)",
        permissions=["activate"],
    )
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", level=messages.ERROR)
            return
        version = model_version_activate(version=queryset.get(), by=f"admin {request.user.get_username()}",
                                         reason="promoted in the admin")
        self.message_user(request, f"{version.version} is now the active model version.")

    def get_urls(self):
        rollback = path("rollback/", self.admin_site.admin_view(self.rollback_view), name="ml_modelversion_rollback")
        return [rollback, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "active_version": ModelVersion.objects.filter(is_active=True).first(),
                         "can_roll_back": self.has_activate_permission(request)}
        return super().changelist_view(request, extra_context=extra_context)

    def rollback_view(self, request):
        """GET asks for confirmation (from which version to which); POST rolls back."""
        if not self.has_activate_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:ml_modelversion_changelist")
        if request.method == "POST":
            try:
                version = model_version_rollback(by=f"admin {request.user.get_username()}",
                                                 reason="rolled back in the admin")
            except NothingToRollBack as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
            else:
                self.message_user(request, f"Rolled back: {version.version} is the active model version again.")
            return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Roll back the model",
            "current": ModelVersion.objects.filter(is_active=True).first(),
            "previous": model_version_rollback_target(), "changelist_url": changelist,
        }
        return TemplateResponse(request, "admin/ml/modelversion/rollback.html", context)

    @admin.display(description="exact match")
    def exact_match_display(self, obj: ModelVersion) -> str:
        return _percent(obj.exact_match)

    @admin.display(description="garment")
    def garment_display(self, obj: ModelVersion) -> str:
        return _percent(obj.head_accuracy("garment"))

    @admin.display(description="condition")
    def condition_display(self, obj: ModelVersion) -> str:
        return _percent(obj.head_accuracy("condition"))

    @admin.display(description="trained on")
    def train_size(self, obj: ModelVersion) -> str:
        size = (obj.metrics or {}).get("train_size")
        return f"{size} images" if size is not None else "-"

    @admin.display(description="data")
    def data_source(self, obj: ModelVersion) -> str:
        return (obj.metrics or {}).get("data_source") or "-"


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


@admin.register(TrainingSample)
class TrainingSampleAdmin(OperatorOnly, RecordsOnly, admin.ModelAdmin):
    """Owner-confirmed photos: read-only (they come from TaskConfirmedEvent)."""

    list_display = ("task_id", "split", "labels", "ai_labels", "corrected", "source_model_version", "created_at")
    list_filter = ("split", "corrected", "source_model_version")
    search_fields = ("task_id", "photo_sha256")
    readonly_fields = [f.name for f in TrainingSample._meta.fields]


@admin.register(RetrainingRun)
class RetrainingRunAdmin(OperatorOnly, PermanentRecords, admin.ModelAdmin):
    """The retraining history: what each run used, what it measured and what it decided."""

    list_display = ("id", "trigger", "status", "requested_at", "seconds", "new_samples", "train_size",
                    "holdout_size", "baseline", "candidate", "reason")
    list_filter = ("status", "trigger")
    readonly_fields = [f.name for f in RetrainingRun._meta.fields]


@admin.register(ModelActivation)
class ModelActivationAdmin(OperatorOnly, PermanentRecords, admin.ModelAdmin):
    """Every promotion and rollback: who, why, and which version it replaced."""

    list_display = ("activated_at", "version", "previous", "activated_by", "reason")
    list_filter = ("activated_by",)
    list_select_related = ("version", "previous")
    readonly_fields = [f.name for f in ModelActivation._meta.fields]
