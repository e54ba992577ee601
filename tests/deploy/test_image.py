"""The image installs the runtime only: requirements.txt has none of the test tooling,
requirements-dev.txt adds it, and nothing the image runs imports it."""

from __future__ import annotations

import ast
import re

from tests.support import ROOT

# What the tests and the tooling need, and the image must not carry.
DEV_ONLY = {"pytest", "pytest-django", "pytest-timeout", "moto", "jsonschema", "kubernetes-validate", "selenium",
            "ruff", "schemathesis"}
DEV_ONLY_MODULES = {"pytest", "pytest_django", "moto", "jsonschema", "kubernetes_validate", "selenium", "ruff",
                    "schemathesis", "tests"}
# Code the image does not run: the tests, the benchmarks (they drive the tests' helpers)
NOT_IN_THE_RUNTIME = {"tests", "benchmarks", ".venv", "var"}


def requirement_names(path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[\[=<>~! ]", line, maxsplit=1)[0].lower())
    return names


def test_the_runtime_requirements_have_none_of_the_test_tooling():
    runtime = requirement_names(ROOT / "requirements.txt")
    assert "django" in runtime and "gunicorn" in runtime
    assert not set(runtime) & DEV_ONLY, set(runtime) & DEV_ONLY


def test_the_dev_requirements_are_the_runtime_plus_the_tooling_pinned():
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in lines
    dev = requirement_names(ROOT / "requirements-dev.txt")
    assert {"pytest", "pytest-django", "selenium", "ruff", "kubernetes-validate", "moto"} <= set(dev)
    assert not set(dev) & set(requirement_names(ROOT / "requirements.txt"))  # each package in one file
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                assert re.search(r"==\d", line), f"{path}: {line} is not pinned"


def test_the_image_installs_the_runtime_and_make_setup_the_dev_requirements():
    instructions = "\n".join(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")
    )
    assert "pip install -r requirements.txt" in instructions
    assert "requirements-dev" not in instructions
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "-r requirements-dev.txt" in bootstrap
    assert "sha256sum requirements.txt requirements-dev.txt" in bootstrap  # a change to either reinstalls


def test_nothing_the_image_runs_imports_a_test_only_package():
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in NOT_IN_THE_RUNTIME:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            offenders += [f"{relative}:{node.lineno} {m}" for m in modules if m.split(".")[0] in DEV_ONLY_MODULES]
    assert not offenders, offenders
