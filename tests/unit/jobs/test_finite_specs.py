"""Finite floats only, anywhere in a spec: NaN and Infinity are refused naming the field, at every door."""

from __future__ import annotations

import math

import pytest

from scalespace import ScalespaceError
from scalespace.jobs.spec_files import check_finite
from scalespace.jobs.specs import SampleSpec, parse_spec

SAMPLE = {"kind": "sample", "process": "vp", "data": "digits", "n": 4}
INF, NAN = math.inf, math.nan

CASES = [
    ({**SAMPLE, "eta": INF}, "eta: Infinity"),
    ({**SAMPLE, "eta": NAN}, "eta: NaN"),
    ({**SAMPLE, "process_params": {"schedule": "custom", "betas": [0.1, -INF]}}, "process_params.betas.1: -Infinity"),
    ({**SAMPLE, "process_params": {"beta_end": NAN}}, "process_params.beta_end: NaN"),
    ({"kind": "train", "process": "vp", "data": "digits", "network": {"dropout": INF}}, "network.dropout: Infinity"),
    ({"kind": "train", "process": "vp", "data": "digits", "lr": NAN}, "lr: NaN"),
    ({"kind": "evaluate", "process": "vp", "data": "digits", "robustness": {"eps": [0.1, NAN]}}, "robustness.eps.1: NaN"),
    ({"kind": "sweep", "name": "s", "processes": ["vp"], "data": ["digits"], "template": {"kind": "sample", "eta": INF}},
     "template.eta: Infinity"),
    ({"kind": "sweep", "name": "s", "processes": ["vp"], "data": ["digits"], "tolerance": NAN}, "tolerance: NaN"),
]


@pytest.mark.parametrize("spec,needle", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_parse_spec_refuses_non_finite_floats_naming_the_field(spec, needle):
    with pytest.raises(ScalespaceError) as e:
        parse_spec(spec)
    assert str(e.value).startswith(needle) and "finite number" in str(e.value) and "\n" not in str(e.value)


def test_finite_specs_still_parse():
    assert parse_spec({**SAMPLE, "eta": 0.5, "process_params": {"beta_end": 0.02}}).eta == 0.5
    assert parse_spec({**SAMPLE, "eta": 1e300}).eta == 1e300


def test_the_spec_models_refuse_them_too():
    """A spec built without parse_spec (the API's body is validated by pydantic) refuses typed non-finite fields."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finite number"):
        SampleSpec(process="vp", data="digits", eta=INF)


def test_check_finite_walks_nested_data_without_recursion():
    check_finite({"a": [1, 2.5, {"b": "inf", "c": None, "d": True}]})  # strings and other values are not numbers
    with pytest.raises(ScalespaceError, match=r"^a\.2\.b: NaN"):
        check_finite({"a": [1, 2.5, {"b": NAN}]})
    deep: list = [INF]
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(ScalespaceError, match="Infinity is not allowed"):
        check_finite(deep)
