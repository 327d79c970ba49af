"""Named sweeps: the sweeps file and tonight's idempotency key."""

from __future__ import annotations

import datetime

import pytest

from scalespace import ScalespaceError
from scalespace.jobs.specs import parse_spec
from scalespace.scheduler.sweeps import load_sweeps, named_sweep, nightly_key


def test_named_sweeps_file(tmp_path):
    f = tmp_path / "sweeps.yaml"
    f.write_text("nightly:\n  processes: [vp]\n  data: [digits]\n  template: {kind: sample, n: 4}\n")
    assert load_sweeps(str(f))["nightly"]["kind"] == "sweep"
    assert parse_spec(named_sweep("nightly", str(f))).name == "nightly"
    with pytest.raises(ScalespaceError, match="no sweep named 'weekly'.*it has: nightly"):
        named_sweep("weekly", str(f))
    with pytest.raises(ScalespaceError, match="SCALESPACE_SWEEPS_FILE"):
        load_sweeps(None)
    assert nightly_key("n", datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)) == "sweep:n:2026-01-02"
