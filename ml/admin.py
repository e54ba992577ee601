from django.contrib import admin, messages

from ml.models import ModelVersion, RetrainingRun, TrainingSample
from ml.services import model_version_activate


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Trained versions are read-only records; the one thing to do with them is activate one."""

    list_display = (
        "version", "is_active", "outcome", "parent", "created_at", "activated_at", "exact_match_display",
        "garment_display", "condition_display", "train_size", "data_source",
    )
    list_filter = ("is_active", "outcome", "architecture")
    search_fields = ("version", "notes")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # readings name their version: keep every version

    def has_activate_permission(self, request):
        return request.user.has_perm("ml.change_modelversion")

    @admin.action(
        description="Activate the selected version (the AI workers switch to it within seconds)",
        permissions=["activate"],
    )
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", level=messages.ERROR)
            return
        version = model_version_activate(version=queryset.get(), by=f"admin {request.user.get_username()}")
        self.message_user(request, f"{version.version} is now the active model version.")

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
class TrainingSampleAdmin(admin.ModelAdmin):
    """Owner-confirmed photos: read-only (they come from TaskConfirmedEvent)."""

    list_display = ("task_id", "split", "labels", "ai_labels", "corrected", "source_model_version", "created_at")
    list_filter = ("split", "corrected", "source_model_version")
    search_fields = ("task_id", "photo_sha256")
    readonly_fields = [f.name for f in TrainingSample._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RetrainingRun)
class RetrainingRunAdmin(admin.ModelAdmin):
    """The retraining history: what each run used, what it measured and what it decided."""

    list_display = ("id", "trigger", "status", "requested_at", "seconds", "new_samples", "train_size",
                    "holdout_size", "baseline", "candidate", "reason")
    list_filter = ("status", "trigger")
    readonly_fields = [f.name for f in RetrainingRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
