"""Fault rules from the settings: how readings trip them, and broken configurations fail loudly."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from monitoring.rules import DEFAULT_FAULT_RULES, fault_rules, parse_rules

RULES = parse_rules({
    "error_codes": {"e21": {"severity": "critical", "message": "Drain failure ({code})"}},
    "unknown_error_code_severity": None,
    "thresholds": {
        "cold": {"field": "temperature_c", "below": 5, "severity": "info", "message": "Cold: {value} < {limit}"},
        "hot": {"field": "temperature_c", "above": 90, "kinds": ["washer"], "cycle_states": ["washing"],
                "severity": "warning", "message": "Hot"},
    },
})


def rules_tripped(reading, kind="washer"):
    return [(trip.rule, trip.severity, trip.message) for trip in RULES.evaluate(reading, kind=kind)]


def test_a_known_error_code_trips_its_rule_and_unknown_ones_can_be_ignored():
    assert rules_tripped({"error_code": "E21"}) == [("error:E21", "critical", "Drain failure (E21)")]
    assert rules_tripped({"error_code": "E77"}) == []
    assert rules_tripped({"error_code": None, "temperature_c": 40}) == []


def test_thresholds_respect_kind_and_cycle_state():
    assert rules_tripped({"temperature_c": 3}) == [("cold", "info", "Cold: 3 < 5")]
    assert rules_tripped({"temperature_c": 95, "cycle_state": "washing"}) == [("hot", "warning", "Hot")]
    assert rules_tripped({"temperature_c": 95, "cycle_state": "idle"}) == []
    assert rules_tripped({"temperature_c": 95, "cycle_state": "washing"}, kind="dryer") == []
    assert rules_tripped({"temperature_c": None}) == []


def test_the_default_rules_are_valid_and_apply_unless_the_setting_replaces_them(settings):
    rules = parse_rules(DEFAULT_FAULT_RULES)
    assert "E21" in rules.error_codes and rules.unknown_error_code_severity == "warning"
    assert settings.MONITORING_FAULT_RULES is None  # no MONITORING_FAULT_RULES in the environment
    fault_rules.cache_clear()
    try:
        assert fault_rules() == rules
        settings.MONITORING_FAULT_RULES = {"error_codes": {"E99": {"severity": "info", "message": "Test code"}}}
        fault_rules.cache_clear()
        assert set(fault_rules().error_codes) == {"E99"} and fault_rules().thresholds == ()
    finally:
        fault_rules.cache_clear()


@pytest.mark.parametrize(
    "config, problem",
    [
        ({"error_codes": {"E1": {"severity": "fatal", "message": "x"}}}, "severity must be one of"),
        ({"error_codes": {"E1": {"severity": "info"}}}, "needs exactly 'severity' and 'message'"),
        ({"thresholds": {"t": {"field": "humidity", "above": 1, "severity": "info", "message": "m"}}}, "field must"),
        ({"thresholds": {"t": {"field": "temperature_c", "severity": "info", "message": "m"}}}, "exactly one of"),
        ({"thresholds": {"t": {"field": "temperature_c", "above": 1, "severity": "info", "message": "{x}"}}},
         "may use only"),
        ({"thresholds": {"t": {"field": "temperature_c", "above": 1, "kinds": ["oven"], "severity": "info",
                               "message": "m"}}}, "kinds must be among"),
        ({"rules": []}, "unknown keys"),
        ({"unknown_error_code_severity": "loud"}, "severity must be one of"),
    ],
)
def test_a_broken_configuration_is_refused_naming_the_problem(config, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        parse_rules(config)
