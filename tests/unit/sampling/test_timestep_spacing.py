"""`timestep_spacing`: diffusers' trailing, leading and linspace respacing of vp / ve sampling.

Diffusers' timesteps d = 0..T-1 are our indices d + 1 (abar_{d+1}); our index 0
is the data, where the last step lands, so every schedule ends with 0.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from scalespace import ScalespaceError
from scalespace.cli import main
from scalespace.jobs.images import from_npz
from scalespace.jobs.run import run_job
from scalespace.jobs.specs import SHARD_FIELDS, parse_spec
from scalespace.sampling.schedule import TIMESTEP_SPACINGS, respace
from scalespace.storage.local import LocalStore

PAIRS = [(1000, 50), (1000, 7), (10, 3), (1000, 1), (1000, 999), (12, 12)]


def diffusers_timesteps(spacing: str, T: int, steps: int) -> np.ndarray:
    """diffusers' set_timesteps (DDIMScheduler / DDPMScheduler), steps_offset 0: 0-based, descending."""
    if spacing == "linspace":
        return np.linspace(0, T - 1, steps).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        step_ratio = T // steps
        return ((np.arange(0, steps) * step_ratio).round()[::-1].copy() + 0).astype(np.int64)
    step_ratio = T / steps
    return (np.round(np.arange(T, 0, -step_ratio)) - 1).astype(np.int64)


def ours(spacing: str, T: int, steps: int) -> list[int]:
    """diffusers' timesteps in the project's convention: d + 1, then the data (index 0)."""
    return [int(d) + 1 for d in diffusers_timesteps(spacing, T, steps)] + [0]


@pytest.mark.parametrize("T,steps", PAIRS)
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_each_spacing_is_diffusers_formula(spacing, T, steps):
    got = respace(T, steps, spacing)
    assert got == ours(spacing, T, steps)
    assert len(got) == steps + 1 and got[-1] == 0 and got == sorted(set(got), reverse=True)


def test_known_lists():
    assert respace(10, 3, "trailing") == [10, 7, 3, 0]
    assert respace(10, 3, "leading") == [7, 4, 1, 0]
    assert respace(10, 3, "linspace") == [10, 5, 1, 0]  # linspace(0, 9, 3) = 0, 4.5, 9: 4.5 rounds half to even
    assert respace(1000, 50, "leading")[:3] == [981, 961, 941] and respace(1000, 50, "leading")[-2:] == [1, 0]
    assert respace(1000, 50, "trailing")[:3] == [1000, 980, 960]


def test_trailing_is_the_default_and_todays_rule():
    """trailing is the exact-arithmetic round(k T / S), half to even: what respace walked before the option."""
    for T in range(1, 61):
        for S in range(1, T + 1):
            exact = sorted({round(Fraction(k * T, S)) for k in range(S + 1)}, reverse=True)
            assert respace(T, S) == respace(T, S, "trailing") == exact
    # diffusers' floating-point arange differs from the exact rule for a few (T, S): here one timestep too many (-1)
    assert list(diffusers_timesteps("trailing", 15, 13))[-1] == -1 and respace(15, 13)[-2:] == [1, 0]


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_all_steps_is_the_full_walk(spacing):
    assert respace(20, 20, spacing) == respace(20, None, spacing) == list(range(20, -1, -1))


# --- through the sample job ---------------------------------------------------------------

_SPEC = {"kind": "sample", "process": "vp", "data": "digits", "data_limit": 64, "n": 4, "steps": 6,
         "sampler": "ddim", "batch_size": 4, "seed": 5, "device": "cpu", "statistics": ["mean"]}


def _run(store: LocalStore, job_id: str, **extra) -> tuple[np.ndarray, list[int]]:
    run_job(parse_spec({**_SPEC, **extra}), store, job_id=job_id)
    samples = from_npz(store.get("jobs", job_id, "samples.npz"))["samples"]
    traj = json.loads(store.get("jobs", job_id, "trajectory.json"))
    return samples, [row["index"] for row in traj["steps"]]


def test_spacings_change_the_samples_and_the_default_does_not(tmp_path):
    store = LocalStore(tmp_path)
    default, idx_default = _run(store, "default")
    out = {s: _run(store, s, timestep_spacing=s) for s in TIMESTEP_SPACINGS}
    assert np.array_equal(out["trailing"][0], default) and out["trailing"][1] == idx_default
    for s in TIMESTEP_SPACINGS:
        assert out[s][1] == respace(1000, 6, s)  # the trajectory visits the spacing's indices
        assert np.isfinite(out[s][0]).all()
    assert not np.array_equal(out["leading"][0], out["trailing"][0])
    assert not np.array_equal(out["linspace"][0], out["trailing"][0])
    assert not np.array_equal(out["leading"][0], out["linspace"][0])


# --- refusals -----------------------------------------------------------------------------


def test_unknown_spacing_is_refused_naming_the_field():
    with pytest.raises(ScalespaceError, match=r"^timestep_spacing: .*'trailing'"):
        parse_spec({**_SPEC, "timestep_spacing": "middle"})
    with pytest.raises(ScalespaceError, match="timestep_spacing: unknown spacing"):
        respace(10, 3, "middle")


@pytest.mark.parametrize("process", ["blurring", "heat", "osmosis"])
def test_non_default_spacing_is_refused_where_it_cannot_apply(tmp_path, process):
    spec = {"kind": "sample", "process": process, "data": "digits", "n": 2, "steps": 3, "device": "cpu",
            "timestep_spacing": "leading"}
    with pytest.raises(ScalespaceError, match=rf"^timestep_spacing: 'leading' applies to .*vp, ve.*not '{process}'"):
        run_job(parse_spec(spec), LocalStore(tmp_path))
    assert not list(tmp_path.rglob("manifest.json"))
    # trailing (explicit or left out) is what these processes walk
    run_job(parse_spec({**spec, "timestep_spacing": "trailing", "n": 1, "steps": 2,
                        "process_params": {"K": 5} if process == "osmosis" else {}}), LocalStore(tmp_path))


def test_command_line(tmp_path, capsys):
    base = ["sample", "--data", "digits", "--n", "2", "--steps", "3", "--out", str(tmp_path), "--quiet"]
    assert main([*base, "--process", "heat", "--timestep-spacing", "linspace"]) == 2
    assert "timestep_spacing" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse offers exactly the spec's choices
        main([*base, "--process", "vp", "--timestep-spacing", "middle"])
    assert main([*base, "--process", "ve", "--sampler", "ddim", "--timestep-spacing", "leading"]) == 0
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["spec"]["timestep_spacing"] == "leading"


def test_the_default_spacing_leaves_the_spec_hash_as_before_the_option():
    """A spec that does not use the option hashes as it did before the field existed (idempotency keys and
    sweep history stay valid across the upgrade); a spec that uses it hashes differently."""
    import hashlib
    import json

    from scalespace.jobs.specs import parse_spec

    spec = parse_spec({"kind": "sample", "process": "vp", "data": "digits", "n": 4})
    # reverse_mean came later still, and is skipped at its default too (tests/unit/sampling/test_reverse_mean.py)
    before = {k: v for k, v in spec.model_dump(mode="json").items() if k not in ("timestep_spacing", "reverse_mean", "pictures", *SHARD_FIELDS)}
    blob = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert spec.spec_hash() == hashlib.sha256(blob).hexdigest()
    leading = parse_spec({"kind": "sample", "process": "vp", "data": "digits", "n": 4, "timestep_spacing": "leading"})
    assert leading.spec_hash() != spec.spec_hash()
