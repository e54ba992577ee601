"""`python manage.py event_schemas`: check or write the committed JSON Schemas of the events."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from messaging.schemas import SCHEMA_DIR, differences, published_contracts, render, schema_document, schema_path


class Command(BaseCommand):
    help = (
        "Check that messaging/schemas/ holds the JSON Schema of every event contract, exactly as the "
        "contracts generate it (the default, exit 1 on a difference), or write the missing ones (--write). "
        "A published schema never changes: change a payload by adding a contract with the next "
        "schema_version; --force overwrites a changed one (only for a version nobody has published yet)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--write", action="store_true", help="Write the schemas of new contract versions.")
        parser.add_argument(
            "--force", action="store_true",
            help="With --write, also overwrite a schema whose contract changed (never for a published version).",
        )

    def handle(self, *args, **options):
        problems = differences()
        if options["force"] and not options["write"]:
            raise CommandError("--force only makes sense with --write")
        if not options["write"]:
            for difference in problems:
                self.stderr.write(f"{difference.problem}: {difference.path.relative_to(SCHEMA_DIR.parent.parent)}")
            if problems:
                raise CommandError(
                    f"{len(problems)} schema file(s) disagree with messaging/contracts.py; a payload change "
                    "needs a new schema_version (then run `manage.py event_schemas --write`)"
                )
            self.stdout.write(f"{len(published_contracts())} event schemas match their contracts")
            return
        changed = [d for d in problems if d.problem == "changed"]
        if changed and not options["force"]:
            names = ", ".join(d.path.name for d in changed)
            raise CommandError(
                f"{names} changed: a published schema does not change; add a contract with the next "
                "schema_version instead (or --force for a version that was never published)"
            )
        SCHEMA_DIR.mkdir(exist_ok=True)
        written = 0
        for contract in published_contracts():
            path = schema_path(contract)
            text = render(schema_document(contract))
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                written += 1
                self.stdout.write(f"wrote {path.name}")
        orphans = [d.path.name for d in problems if d.problem == "orphaned"]
        if orphans:
            self.stderr.write(f"warning: no contract for {', '.join(orphans)} (left in place)")
        self.stdout.write(f"{written} schema file(s) written, {len(published_contracts())} contracts")
