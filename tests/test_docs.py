"""The docs stay a map that leads somewhere: every design id the code cites has its entry in
docs/decisions.md, and every relative link of the README and docs/ reaches a file (and a
heading) that exists."""

import os
import re
from pathlib import Path

from tests.support import ROOT

DOCS = ROOT / "docs"
SKIPPED_DIRS = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh", ".html", ".txt", ".json"}
TEXT_NAMES = {"Procfile", "Makefile", "Dockerfile"}
DESIGN_ID = re.compile(r"\b(D[GD]-\d\d)\b")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def project_text_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS]
        for name in files:
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES or name in TEXT_NAMES:
                yield path


def prose(markdown: str) -> str:
    """The markdown without its fenced blocks and inline code, where brackets are not links."""
    without_fences = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", without_fences)


def anchors(markdown: str) -> set[str]:
    """The ids GitHub gives the headings of a markdown file."""
    found, seen = set(), {}
    for line in prose_lines(markdown):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def prose_lines(markdown: str) -> list[str]:
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def decision_entries() -> list[str]:
    text = (DOCS / "decisions.md").read_text()
    return re.findall(r"^### (D[GD]-\d\d)\. ", text, flags=re.M)


def test_every_design_id_the_project_cites_has_an_entry_in_decisions_md():
    entries = decision_entries()
    assert len(entries) == len(set(entries)), f"an id has two entries: {sorted(entries)}"
    cited: dict[str, set[str]] = {}
    for path in project_text_files():
        for design_id in DESIGN_ID.findall(path.read_text(errors="replace")):
            cited.setdefault(design_id, set()).add(str(path.relative_to(ROOT)))
    missing = {design_id: sorted(paths) for design_id, paths in cited.items() if design_id not in entries}
    assert missing == {}, "add an entry (### DG-nn. ...) to docs/decisions.md for these"
    assert {"DG-02", "DG-03", "DG-04"} <= cited.keys()  # the scan finds the code's citations


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file_and_heading_that_exist():
    broken = []
    for page in markdown_files():
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, fragment = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked.read_text()):
                broken.append(f"{where} (no such heading)")
    assert broken == []


def test_the_readme_leads_to_every_doc():
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for target in LINK.findall(prose((ROOT / "README.md").read_text()))
    }
    assert [path.name for path in sorted(DOCS.glob("*.md")) if path.resolve() not in linked] == []
