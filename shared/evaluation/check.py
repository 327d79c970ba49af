"""One verdict per scale-space property, and what theory expects of each process.

A `Check` says whether a property applies to the process, whether it holds
(figure within tolerance), and what theory promises: "holds", "fails" (theory
says it does not hold: the check must report it failing) or "report" (measured
and shown, never asserted: F3 d, R3 for most processes, invariances osmosis is
not promised). `agrees` is False only when an asserted property came out the
other way, which is what a test or a nightly sweep flags.

Every check has a `kind`, how much evidence it is:

- "test": a statistical test on samples (a step counts against the property
  only beyond Z_SCORE standard errors of a Monte Carlo estimate);
- "bound": a figure (computed deterministically, or from paired samples)
  against a stated threshold;
- "identity": holds by construction (no counterexample can be built with
  the code as it is, e.g. F1 where index 0 is the data itself, R1 where the
  prior is the forward marginal). It is shown, but it is no evidence: the
  banner does not count it among the properties that agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from scalespace.processes import PROCESSES
from scalespace.processes.base import Expectation

#: standard errors a Monte Carlo step may go the wrong way before it counts against a property
Z_SCORE = 4.0

CheckKind = Literal["test", "bound", "identity"]
#: every kind a check may have
KINDS: tuple[CheckKind, ...] = ("test", "bound", "identity")

#: every check key some process's table of expected verdicts names (a key no process names is reported, never asserted)
KNOWN_KEYS = frozenset(k for cls in PROCESSES.values() for k in cls.expected)


def expected_for(key: str, process: str) -> Expectation:
    """What theory says of check `key` for the process named `process` (its class's `expected`)."""
    cls = PROCESSES.get(process)
    if cls is None:
        return "report"
    return cls.expected.get(key, "n/a" if key in KNOWN_KEYS else "report")


def add_in_order(values: Any) -> float:
    """Floats added left to right. The built-in sum of floats is compensated from Python 3.12 on, so a figure
    summed with it differs in the last bit between interpreters; this one does not."""
    total = 0.0
    for v in values:
        total += v
    return total


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
    #: test, bound or identity (see the module's docstring)
    kind: CheckKind = "bound"

    @property
    def counts(self) -> bool:
        """True when the check is evidence on an asserted property: counted in "N of M agree"."""
        return self.expected in ("holds", "fails") and self.kind != "identity"

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
            "kind": self.kind,
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


def not_applicable(key: str, name: str, process: str, why: str, kind: CheckKind = "bound") -> Check:
    return Check(key, name, process, applies=False, holds=None, figure=None, tolerance=None, explanation=why, kind=kind)


def counted(c: dict[str, Any]) -> bool:
    """A check of a report's JSON that the banner counts: asserted by theory and not an identity."""
    return c["expected"] in ("holds", "fails") and c.get("kind") != "identity"


__all__ = ["KINDS", "Z_SCORE", "Check", "CheckKind", "Expectation", "counted", "expected_for", "finite_or_none", "not_applicable"]
