"""One verdict per scale-space property (SPEC section 3), and what theory expects of each process.

A `Check` says whether a property applies to the process, whether it holds
(figure within tolerance), and what SPEC promises: "holds", "fails" (theory
says it does not hold: the check must report it failing) or "report" (measured
and shown, never asserted: F3 d, R3 for most processes, invariances osmosis is
not promised). `agrees` is False only when an asserted property came out the
other way, which is what a test or a nightly sweep flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Expectation = Literal["holds", "fails", "report", "n/a"]

_ALL = ("vp", "ve", "blurring", "heat", "osmosis")


def _only(expect: Expectation, *names: str, other: Expectation = "n/a") -> dict[str, Expectation]:
    return {p: (expect if p in names else other) for p in _ALL}


#: SPEC section 3, per check key and process
EXPECTED: dict[str, dict[str, Expectation]] = {
    "F1": _only("holds", *_ALL),
    "F2": _only("holds", *_ALL),
    "F3a": _only("holds", *_ALL),
    "F3b": _only("holds", *_ALL),
    "F3c": _only("holds", "vp", other="report"),
    "F3d": _only("report", *_ALL),
    "F4": _only("holds", *_ALL),
    "F5-permutation": {"vp": "holds", "ve": "holds", "blurring": "fails", "heat": "fails", "osmosis": "report"},
    "F5-circular-shift": {"vp": "holds", "ve": "holds", "blurring": "fails", "heat": "fails", "osmosis": "report"},
    "F5-flip-horizontal": _only("holds", "vp", "ve", "blurring", "heat", other="report"),
    "F5-flip-vertical": _only("holds", "vp", "ve", "blurring", "heat", other="report"),
    "F5-transpose": _only("holds", "vp", "ve", "blurring", "heat", other="report"),
    "F5-rotate-90": _only("holds", "vp", "ve", "blurring", "heat", other="report"),
    "F5-channel-permutation": _only("holds", "vp", "ve", "blurring", "heat", other="report"),
    "F5-grey-shift": _only("holds", "vp", "ve", "blurring", "heat", other="report"),
    "F5-mean": _only("holds", "heat", "osmosis"),
    "R1": _only("holds", *_ALL),
    "R2": _only("holds", *_ALL),
    "R3": _only("holds", "vp", other="report"),
    "R4": _only("holds", *_ALL),
    "O1": _only("holds", "osmosis"),
    "O2": _only("holds", "osmosis"),
    "O3": _only("holds", "osmosis"),
}


def expected_for(key: str, process: str) -> Expectation:
    return EXPECTED.get(key, {}).get(process, "report")


def finite_or_none(x: Any) -> Any:
    """JSON has no inf or NaN: non-finite floats become None, recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    return x


@dataclass
class Check:
    """The verdict on one property: figure against tolerance, with a one-paragraph explanation."""

    key: str
    name: str
    process: str
    applies: bool
    holds: bool | None
    figure: float | None
    tolerance: float | None
    explanation: str
    #: extra series for plots and the JSON report (e.g. the sequence over t)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> Expectation:
        return expected_for(self.key, self.process) if self.applies else "n/a"

    @property
    def agrees(self) -> bool:
        """False only when an asserted property came out the other way."""
        e = self.expected
        if e == "holds":
            return self.holds is True
        if e == "fails":
            return self.holds is False
        return True

    def to_dict(self, with_details: bool = True) -> dict[str, Any]:
        out = {
            "key": self.key,
            "name": self.name,
            "applies": self.applies,
            "holds": self.holds,
            "expected": self.expected,
            "agrees": self.agrees,
            "figure": self.figure,
            "tolerance": self.tolerance,
            "explanation": self.explanation,
        }
        if with_details and self.details:
            out["details"] = self.details
        return finite_or_none(out)


def not_applicable(key: str, name: str, process: str, why: str) -> Check:
    return Check(key, name, process, applies=False, holds=None, figure=None, tolerance=None, explanation=why)


__all__ = ["Check", "EXPECTED", "Expectation", "expected_for", "finite_or_none", "not_applicable"]
