"""The table of job kinds: one row per spec, each with its check and its runner, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scalespace import ScalespaceError
from scalespace.jobs.kinds import JOB_KINDS, job_kind
from scalespace.jobs.specs import CHILD_KINDS, JOB_SPECS, KINDS, parse_spec


def test_one_row_per_spec_in_the_order_of_kinds():
    assert KINDS == ("sample", "evaluate", "train", "sweep") and CHILD_KINDS == KINDS[:3]
    assert tuple(JOB_KINDS) == KINDS and [k.spec for k in JOB_KINDS.values()] == list(JOB_SPECS)
    assert [k for k in KINDS if JOB_KINDS[k].resumable] == ["train"]
    assert [k for k in KINDS if JOB_KINDS[k].grid] == ["sweep"]
    for kind in JOB_KINDS.values():
        assert callable(kind.check) and callable(kind.run)
    with pytest.raises(ScalespaceError, match="kind: jobs of kind 'nope' are not supported; choose one of sample, "):
        job_kind("nope")


def test_a_check_takes_the_process_its_caller_built():
    from scalespace.jobs.sample import process_for

    spec = parse_spec({"kind": "sample", "process": "blurring", "data": "digits", "sampler": "ddim"})
    process = process_for(spec, (1, 8, 8))
    with pytest.raises(ScalespaceError, match="^sampler: "):
        job_kind("sample").check(spec, process)
    good = parse_spec({"kind": "sample", "process": "blurring", "data": "digits", "steps": 10})
    assert job_kind("sample").check(good, process) is process
    children = job_kind("sweep").check(parse_spec({"kind": "sweep", "name": "s", "processes": ["vp"], "data": ["digits"]}))
    assert [c.key for c in children] == ["vp/digits/oracle"]


def test_the_specs_and_the_table_import_without_torch():
    code = ("import sys, scalespace.jobs, scalespace.jobs.specs, scalespace.jobs.kinds; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
