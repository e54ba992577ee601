"""The JSON Schemas of the event payloads: generated from the contracts, committed, immutable.

Every contract of `messaging.contracts` has a file `messaging/schemas/<EventType>.v<N>.json`
(JSON Schema 2020-12 of its payload, with the event type, version and producer). The files
are what a team that deploys a producer or a consumer on its own reads and tests against;
a published file never changes: a payload change is a new contract class with the next
`schema_version`, and so a new file beside the old one. `manage.py event_schemas` writes
and checks them, and the test suite fails when a contract and its file disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from messaging import contracts
from messaging.events import Event, registered_contracts

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def published_contracts() -> list[type[Event]]:
    """The contracts of `messaging.contracts` (not test-only ones), by type and version."""
    return [cls for cls in registered_contracts() if cls.__module__ == contracts.__name__]


def schema_path(contract: type[Event]) -> Path:
    return SCHEMA_DIR / f"{contract.event_type}.v{contract.schema_version}.json"


def schema_document(contract: type[Event]) -> dict[str, Any]:
    """The JSON Schema of a contract's payload, as committed."""
    payload = contract.model_json_schema(mode="serialization")
    return {
        "$schema": DIALECT,
        "$id": f"urn:fitness:event:{contract.event_type}:v{contract.schema_version}",
        "x-event-type": contract.event_type,
        "x-schema-version": contract.schema_version,
        "x-producer": contract.producer,
        **payload,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_schema(event_type: str, schema_version: int) -> dict[str, Any]:
    """The committed schema of one event version (what a consumer or producer test checks against)."""
    return json.loads((SCHEMA_DIR / f"{event_type}.v{schema_version}.json").read_text())


@dataclass(frozen=True)
class SchemaDifference:
    path: Path
    problem: str  # "missing", "changed" or "orphaned"


def differences() -> list[SchemaDifference]:
    """Where the committed files and the contracts disagree."""
    found: list[SchemaDifference] = []
    expected = {schema_path(contract): contract for contract in published_contracts()}
    for path, contract in expected.items():
        if not path.exists():
            found.append(SchemaDifference(path, "missing"))
        elif path.read_text() != render(schema_document(contract)):
            found.append(SchemaDifference(path, "changed"))
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        if path not in expected:
            found.append(SchemaDifference(path, "orphaned"))
    return found
