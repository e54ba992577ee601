"""`python manage.py retrain`: fine-tune the active model on the confirmed samples, now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ml.models import RetrainingRun
from ml.retraining import RetrainingBusy, RetrainingSettings, retrain_request
from ml.training_data import samples_not_yet_used


class Command(BaseCommand):
    help = (
        "Fine-tune the active model version on the owner-confirmed samples, evaluate it and the "
        "active version on the held-out samples, and promote the candidate only when it is at least "
        "as good (otherwise keep it as rejected, with the reason). Runs here, printing its progress; "
        "with --enqueue, hands the run to the worker-mlops pool instead. Exits 1 when the run fails."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--enqueue", action="store_true",
            help="Queue the run for the worker-mlops pool and return at once (see `manage.py models`).",
        )
        parser.add_argument(
            "--wait", action="store_true",
            help="If another process is retraining now, wait for it to finish instead of exiting with an error.",
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        config = RetrainingSettings.from_django()
        new = samples_not_yet_used()
        self.stdout.write(
            f"{new} new confirmed sample(s) since the last run (a run is queued automatically at "
            f"{config.min_new_samples}; ML_RETRAIN_MIN_NEW_SAMPLES)"
        )
        run, created = retrain_request(
            trigger=RetrainingRun.Trigger.COMMAND, requested_by="manage.py retrain", enqueue=options["enqueue"]
        )
        if options["enqueue"]:
            joined = "" if created else " (joined the run that was already queued)"
            self.stdout.write(f"run {run.pk} queued for the worker-mlops pool{joined}")
            return
        from ml.retraining_pipeline import retrain_pending  # torch: only when the run runs here

        try:
            finished = retrain_pending(progress=self._say, wait=options["wait"])
        except RetrainingBusy as exc:
            raise CommandError(f"{exc}; run {run.pk} stays queued for it (or use --wait)") from exc
        mine = next((r for r in finished if r.pk == run.pk), None)
        if mine is None:
            mine = RetrainingRun.objects.get(pk=run.pk)
        line = f"run {mine.pk} {mine.status}: {mine.reason}"
        if mine.candidate_id:
            line += f" (candidate {mine.candidate.version})"
        if mine.seconds is not None:
            line += f" in {mine.seconds:.0f} s"
        if mine.status == RetrainingRun.Status.FAILED:
            raise CommandError(line)
        self.stdout.write(line)

    def _say(self, line: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(line)
