"""Fault rules: which telemetry readings open a fault, with which severity.

The rules are DEFAULT_FAULT_RULES below, unless the setting MONITORING_FAULT_RULES (the
environment variable of the same name, as JSON) replaces them with rules of the same shape.
Two kinds:

* error codes: a reading with `error_code` E21 trips the rule `error:E21`; codes not in
  the table trip with `unknown_error_code_severity` (or are ignored when it is null);
* thresholds: a reading whose `field` is `above` or `below` a limit, or `equals` a value,
  optionally only for some kinds of equipment and some cycle states.

Messages may use {value} and {limit} (thresholds) or {code} (error codes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SEVERITIES = ("info", "warning", "critical")
THRESHOLD_FIELDS = ("temperature_c", "vibration_g", "door_open")
KINDS = ("washer", "dryer")
CYCLE_STATES = ("idle", "washing", "rinsing", "spinning", "drying", "cooling", "finished")

# The rules unless the setting MONITORING_FAULT_RULES replaces them.
DEFAULT_FAULT_RULES = {
    "error_codes": {
        "E21": {"severity": "critical", "message": "Drain failure: the water does not drain"},
        "E31": {"severity": "warning", "message": "Water level sensor fault"},
        "E41": {"severity": "critical", "message": "Door lock failure"},
        "E51": {"severity": "critical", "message": "Motor overload"},
        "E61": {"severity": "critical", "message": "Heater failure"},
    },
    # Any other error code opens a fault of this severity (None: other codes are ignored).
    "unknown_error_code_severity": "warning",
    "thresholds": {
        "overheat": {"field": "temperature_c", "above": 95, "kinds": ["washer"], "severity": "critical",
                     "message": "Overheating: {value} °C (limit {limit} °C)"},
        "dryer_overheat": {"field": "temperature_c", "above": 110, "kinds": ["dryer"], "severity": "critical",
                           "message": "Dryer overheating: {value} °C (limit {limit} °C)"},
        "vibration": {"field": "vibration_g", "above": 2.5, "severity": "warning",
                      "message": "Excessive vibration: {value} g (limit {limit} g); unbalanced load?"},
        "door_open_in_cycle": {"field": "door_open", "equals": True, "severity": "critical",
                               "cycle_states": ["washing", "rinsing", "spinning", "drying"],
                               "message": "The door is open during a cycle"},
    },
}


@dataclass(frozen=True)
class Trip:
    """A rule tripped by a reading: what the fault will say."""

    rule: str
    code: str
    severity: str
    message: str


@dataclass(frozen=True)
class Threshold:
    name: str
    field: str
    severity: str
    message: str
    above: float | None = None
    below: float | None = None
    equals: Any = None
    kinds: tuple[str, ...] = ()
    cycle_states: tuple[str, ...] = ()

    def check(self, reading: dict, kind: str) -> Trip | None:
        value = reading.get(self.field)
        if value is None or (self.kinds and kind not in self.kinds):
            return None
        if self.cycle_states and reading.get("cycle_state") not in self.cycle_states:
            return None
        if self.above is not None:
            tripped, limit = value > self.above, self.above
        elif self.below is not None:
            tripped, limit = value < self.below, self.below
        else:
            tripped, limit = value == self.equals, self.equals
        if not tripped:
            return None
        return Trip(self.name, self.name, self.severity, self.message.format(value=value, limit=limit))


@dataclass(frozen=True)
class ErrorCode:
    severity: str
    message: str


@dataclass(frozen=True)
class FaultRules:
    error_codes: dict[str, ErrorCode]
    unknown_error_code_severity: str | None
    thresholds: tuple[Threshold, ...]

    def evaluate(self, reading: dict, *, kind: str) -> list[Trip]:
        """The rules `reading` trips on equipment of `kind`, error code first."""
        trips = []
        code = reading.get("error_code")
        if code:
            known = self.error_codes.get(code)
            if known is not None:
                trips.append(Trip(f"error:{code}", code, known.severity, known.message.format(code=code)))
            elif self.unknown_error_code_severity:
                trips.append(
                    Trip(f"error:{code}", code, self.unknown_error_code_severity, f"Error code {code} reported")
                )
        for threshold in self.thresholds:
            trip = threshold.check(reading, kind)
            if trip is not None:
                trips.append(trip)
        return trips


@functools.cache
def fault_rules() -> FaultRules:
    """The rules in force: the setting MONITORING_FAULT_RULES, or DEFAULT_FAULT_RULES when it is None."""
    configured = settings.MONITORING_FAULT_RULES
    return parse_rules(DEFAULT_FAULT_RULES if configured is None else configured)


def parse_rules(config: dict) -> FaultRules:
    """Check and parse a MONITORING_FAULT_RULES dict; ImproperlyConfigured names the culprit."""

    def fail(where: str, problem: str):
        raise ImproperlyConfigured(f"MONITORING_FAULT_RULES {where}: {problem}")

    def severity(where: str, value: Any) -> str:
        if value not in SEVERITIES:
            fail(where, f"severity must be one of {', '.join(SEVERITIES)}, not {value!r}")
        return value

    if not isinstance(config, dict):
        fail("", "must be a dict (or a JSON object)")
    unknown = set(config) - {"error_codes", "unknown_error_code_severity", "thresholds"}
    if unknown:
        fail("", f"unknown keys {sorted(unknown)}")
    codes = {}
    for code, spec in (config.get("error_codes") or {}).items():
        if not isinstance(spec, dict) or set(spec) != {"severity", "message"}:
            fail(f"error_codes[{code!r}]", "needs exactly 'severity' and 'message'")
        try:
            spec["message"].format(code=code)
        except (KeyError, IndexError, ValueError) as exc:
            fail(f"error_codes[{code!r}]", f"the message may use only {{code}}: {exc}")
        codes[code.upper()] = ErrorCode(severity(f"error_codes[{code!r}]", spec["severity"]), spec["message"])
    unknown_severity = config.get("unknown_error_code_severity")
    if unknown_severity is not None:
        severity("unknown_error_code_severity", unknown_severity)
    thresholds = []
    for name, spec in (config.get("thresholds") or {}).items():
        where = f"thresholds[{name!r}]"
        if not isinstance(spec, dict):
            fail(where, "must be a dict")
        if not 1 <= len(name) <= 50:
            fail(where, "the rule's name must have 1 to 50 characters")
        allowed = {"field", "above", "below", "equals", "severity", "message", "kinds", "cycle_states"}
        if set(spec) - allowed:
            fail(where, f"unknown keys {sorted(set(spec) - allowed)}")
        if spec.get("field") not in THRESHOLD_FIELDS:
            fail(where, f"field must be one of {', '.join(THRESHOLD_FIELDS)}")
        if sum(key in spec for key in ("above", "below", "equals")) != 1:
            fail(where, "needs exactly one of 'above', 'below', 'equals'")
        if set(spec.get("kinds", ())) - set(KINDS) or set(spec.get("cycle_states", ())) - set(CYCLE_STATES):
            fail(where, f"kinds must be among {KINDS}, cycle_states among {CYCLE_STATES}")
        if not isinstance(spec.get("message"), str):
            fail(where, "needs a 'message'")
        try:
            spec["message"].format(value=0, limit=0)
        except (KeyError, IndexError, ValueError) as exc:
            fail(where, f"the message may use only {{value}} and {{limit}}: {exc}")
        thresholds.append(Threshold(
            name=name, field=spec["field"], severity=severity(where, spec.get("severity")), message=spec["message"],
            above=spec.get("above"), below=spec.get("below"), equals=spec.get("equals"),
            kinds=tuple(spec.get("kinds", ())), cycle_states=tuple(spec.get("cycle_states", ())),
        ))
    return FaultRules(codes, unknown_severity, tuple(thresholds))
