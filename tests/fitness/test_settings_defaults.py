"""Each default has one home: fitness/settings.py defines it, code reads `settings.X`."""

import ast

from tests.support import ROOT

PACKAGES = ["fitness", "messaging", "tasks", "branches", "monitoring", "ml", "notifications", "observability"]


def test_no_code_repeats_a_settings_default_in_a_getattr_fallback():
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                    and len(node.args) == 3 and isinstance(node.args[0], ast.Name) and node.args[0].id == "settings"
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "read settings.X; the default belongs in fitness/settings.py"
