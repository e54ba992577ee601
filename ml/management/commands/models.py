"""`python manage.py models [list | promote VERSION | rollback]`: the operator's model versions."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from fitness.formatting import table
from ml.models import ModelVersion
from ml.selectors import model_version_list
from ml.services import ModelVersionNotFound, NothingToRollBack, model_version_activate, model_version_rollback


class Command(BaseCommand):
    help = (
        "List the model versions with their held-out metrics (`models` or `models list`), make one "
        "the active version by hand (`models promote v4`), or go back to the version that was active "
        "before the current one (`models rollback`). The AI workers switch within seconds."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", metavar="{list,promote,rollback}")
        listing = actions.add_parser("list", help="The versions, newest first, with their metrics (the default).")
        listing.add_argument("--limit", type=int, default=20, help="How many versions to show (default 20).")
        promote = actions.add_parser("promote", help="Make VERSION the active version.")
        promote.add_argument("version", help='The version name, e.g. "v4".')
        promote.add_argument("--reason", default="", help="Why (kept in the activation history).")
        rollback = actions.add_parser("rollback", help="Activate the version that was active before the current one.")
        rollback.add_argument("--reason", default="", help="Why (kept in the activation history).")

    def handle(self, *args, **options):
        action = options.get("action") or "list"
        if action == "promote":
            try:
                version = model_version_activate(
                    version=options["version"], by="manage.py models promote", reason=options["reason"]
                )
            except ModelVersionNotFound as exc:
                raise CommandError(f"{exc} See `manage.py models list`.") from exc
            self.stdout.write(f"{version.version} is the active version; the AI workers switch to it within seconds")
            return
        if action == "rollback":
            try:
                version = model_version_rollback(by="manage.py models rollback", reason=options["reason"])
            except NothingToRollBack as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"rolled back: {version.version} is the active version again")
            return
        limit = options.get("limit", 20)
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        self._table(list(model_version_list().select_related("parent")[:limit]))

    def _table(self, versions: list[ModelVersion]) -> None:
        if not versions:
            self.stdout.write("no model versions yet: train one with `manage.py train_model`")
            return
        header = ("", "version", "outcome", "from", "exact", "garment", "condition", "held out", "trained on",
                  "created", "reason")
        rows = []
        for version in versions:
            metrics = version.metrics or {}
            rows.append((
                "*" if version.is_active else "",
                version.version,
                version.outcome,
                version.parent.version if version.parent else "-",
                _percent(version.exact_match),
                _percent(version.head_accuracy("garment")),
                _percent(version.head_accuracy("condition")),
                str(metrics.get("eval_size", "-")),
                str(metrics.get("train_size", "-")),
                version.created_at.strftime("%Y-%m-%d %H:%M"),
                version.outcome_reason or version.notes or "",
            ))
        for line in table(header, rows):
            self.stdout.write(line)
        self.stdout.write("* = active. Metrics are on each version's own held-out samples; a retrained candidate's "
                          "reason compares it with its parent on the same samples.")


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"
