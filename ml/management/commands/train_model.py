import argparse
import os
import time

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from ml import defaults
from ml.datasets import FOLDER_LAYOUT, load_image_folder
from ml.errors import DatasetError
from ml.labels import LABEL_SPACES
from ml.selectors import model_version_active, model_version_active_name


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, and the description's line breaks kept."""


class Command(BaseCommand):
    help = f"""Train a new AI model version on the CPU, store it with its held-out metrics, and activate it.

Trains on the photos of --data DIR when given, else on synthetic laundry pictures drawn
by ml.synthetic (--per-class pictures of every garment and condition). A stratified 20%
of the pictures is held out and never trained on; the stored metrics (accuracy of each
head, exact-match accuracy) are measured on it. The new version is activated when
--activate is given or when no version is active yet; --no-activate keeps it inactive.

The --data directory has one folder per garment with one folder per condition inside:

    {FOLDER_LAYOUT}

    e.g. photos/shirt/stained/0001.jpg, photos/sock/clean/img_4711.png

garments:   {", ".join(LABEL_SPACES["garment"])}
conditions: {", ".join(LABEL_SPACES["condition"])}

Hidden files and files with other extensions are ignored; unreadable images are skipped
and counted. An unknown folder name, an image outside a condition folder or a directory
without images is an error, and then nothing is stored.

The defaults train a usable model from synthetic data in about two minutes on two cores."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, formatter_class=_HelpFormatter, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--data", metavar="DIR", help=f"Train on the photos of DIR ({FOLDER_LAYOUT}).")
        parser.add_argument(
            "--per-class", type=int, default=defaults.PER_CLASS,
            help="Synthetic pictures per garment and condition, without --data (default: %(default)s).",
        )
        parser.add_argument(
            "--image-size", type=int, default=defaults.IMAGE_SIZE,
            help="Photos are resized to this many pixels square (default: %(default)s).",
        )
        parser.add_argument(
            "--epochs", type=int, default=defaults.EPOCHS, help="Passes over the data (default: %(default)s)."
        )
        parser.add_argument(
            "--seed", type=int, default=0,
            help="Seed of the synthetic pictures and of training (default: %(default)s).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=defaults.BATCH_SIZE, help="Pictures per step (default: %(default)s)."
        )
        parser.add_argument(
            "--learning-rate", type=float, default=defaults.LEARNING_RATE,
            help="Peak of the one-cycle learning rate (default: %(default)s).",
        )
        parser.add_argument(
            "--eval-fraction", type=float, default=defaults.EVAL_FRACTION,
            help="Part of the pictures held out for evaluation (default: %(default)s).",
        )
        activation = parser.add_mutually_exclusive_group()
        activation.add_argument(
            "--activate", dest="activate", action="store_true", default=None,
            help="Activate the new version (default: only when no version is active yet).",
        )
        activation.add_argument(
            "--no-activate", dest="activate", action="store_false", help="Keep the new version inactive."
        )
        parser.add_argument(
            "--if-missing", action="store_true",
            help="Do nothing (and exit 0) when a version is already active; `make run` uses this.",
        )
        parser.add_argument("--notes", default="", help="Free text stored with the version.")

    def handle(self, *args, **options):
        started = time.perf_counter()
        self.verbosity = options["verbosity"]
        if options["if_missing"]:
            active = model_version_active()
            if active and active.artifact.storage.exists(active.artifact.name):
                self.stdout.write(f"model {active.version} is active; nothing to train (--if-missing)")
                return
            if active:
                # e.g. a fresh media directory beside an old database: the workers could
                # not load it, so a usable version is trained and activated instead
                self.stdout.write(f"model {active.version} is active but its file {active.artifact.name} is missing")
                options["activate"] = True
        self._check_numbers(options)
        samples, data_source = self._load_samples(options)

        from ml.nets import ARCHITECTURE, state_dict_to_bytes
        from ml.services import model_version_create
        from ml.training import train

        try:
            result = train(
                samples=samples,
                label_spaces=LABEL_SPACES,
                epochs=options["epochs"],
                image_size=options["image_size"],
                seed=options["seed"],
                progress=self._say,
                eval_fraction=options["eval_fraction"],
                batch_size=options["batch_size"],
                learning_rate=options["learning_rate"],
                data_source=data_source,
            )
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        activate = options["activate"]
        if activate is None:
            activate = model_version_active_name() is None
        metrics = {**result.metrics, "total_seconds": round(time.perf_counter() - started, 1)}
        version = model_version_create(
            artifact=state_dict_to_bytes(result.state_dict),
            architecture=ARCHITECTURE,
            image_size=options["image_size"],
            label_spaces=LABEL_SPACES,
            metrics=metrics,
            activate=activate,
            notes=options["notes"],
        )
        heads = ", ".join(f"{head} {value:.1%}" for head, value in metrics["accuracy"].items())
        if version.is_active:
            state = "stored and activated"
        else:
            state = f"stored, not activated (active: {model_version_active_name() or 'none'})"
        self.stdout.write(
            f"model {version.version} {state}: held-out exact match {metrics['exact_match']:.1%} ({heads}) "
            f"on {metrics['eval_size']} images; trained on {metrics['train_size']} images "
            f"in {metrics['total_seconds']:.0f} s"
        )

    def _say(self, line: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(line)

    def _check_numbers(self, options) -> None:
        if options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1")
        if options["per_class"] < 2 and not options["data"]:
            raise CommandError("--per-class must be at least 2 (one picture of each kind is held out)")
        if not 32 <= options["image_size"] <= 512:
            raise CommandError("--image-size must be between 32 and 512")
        if options["batch_size"] < 2:
            raise CommandError("--batch-size must be at least 2")
        if not options["learning_rate"] > 0:
            raise CommandError("--learning-rate must be positive")
        if not 0 < options["eval_fraction"] < 1:
            raise CommandError("--eval-fraction must be between 0 and 1")

    def _load_samples(self, options):
        if options["data"]:
            try:
                data = load_image_folder(options["data"], max_side=options["image_size"] * 2)
            except DatasetError as exc:
                raise CommandError(str(exc)) from exc
            if data.skipped:
                path, why = data.skipped[0]
                self.stderr.write(f"warning: skipped {len(data.skipped)} unreadable image(s), e.g. {path}: {why}")
            missing = [
                f"{garment}/{condition}"
                for garment in LABEL_SPACES["garment"]
                for condition in LABEL_SPACES["condition"]
                if (garment, condition) not in data.counts()
            ]
            if missing:
                self.stderr.write(f"warning: no images of {', '.join(missing)}")
            self._say(f"read {len(data.samples)} images from {options['data']}")
            return data.samples, f"folder {os.path.abspath(options['data'])}"
        from ml.synthetic import generate

        started = time.perf_counter()
        # a few hundred pictures are drawn faster than worker processes start
        many = options["per_class"] * len(LABEL_SPACES["garment"]) * len(LABEL_SPACES["condition"]) >= 300
        workers = min(os.cpu_count() or 1, 4) if many else 1
        samples = generate(
            per_class=options["per_class"], image_size=options["image_size"], seed=options["seed"], workers=workers
        )
        self._say(f"drew {len(samples)} synthetic pictures in {time.perf_counter() - started:.1f} s")
        return samples, f"synthetic (per_class={options['per_class']}, seed={options['seed']})"
