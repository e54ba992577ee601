"""monitoring produces EquipmentFaultEvent: a producer imports no consumer code (DG-03 in docs/decisions.md)."""

from tests.support import ROOT
from tests.test_architecture import CONSUMER_PACKAGES, imported_modules


def test_monitoring_and_branches_import_nothing_from_the_consumers():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in ("monitoring", "branches")
        for path in (ROOT / package).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in CONSUMER_PACKAGES
    ]
    assert offenders == []
