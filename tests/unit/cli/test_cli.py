"""The embedded command line: a good job, and each bad input as a one-line error with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scalespace.cli import main
from scalespace.data import datasets


def _manifests(root: Path) -> list[Path]:
    return list(root.rglob("manifest.json")) if root.exists() else []


def test_sample_writes_artifacts_and_manifest_last(tmp_path, capsys):
    rc = main(["sample", "--process", "vp", "--data", "digits", "--n", "5", "--steps", "20", "--seed", "4",
               "--batch-size", "2", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "succeeded" in out
    (manifest_path,) = _manifests(tmp_path)
    job = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    with np.load(job / "samples.npz", allow_pickle=False) as f:
        samples = f["samples"]
    assert samples.shape == (5, 1, 8, 8) and samples.dtype == np.float32
    assert samples.min() >= -1 and samples.max() <= 1
    assert (job / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    traj = json.loads((job / "trajectory.json").read_text())
    steps = traj["steps"]
    assert len(steps) == 21 and steps[0]["index"] == 1000 and steps[-1]["index"] == 0
    assert {"t", "mean", "variance", "conditional_entropy"} <= set(steps[0])
    assert steps[0]["conditional_entropy"] > steps[10]["conditional_entropy"]
    names = {a["name"] for a in manifest["artifacts"]}
    # the command makes the captioned pictures by default (--no-pictures: without them)
    assert names == {"samples.npz", "grid.png", "trajectory.json", "scale_space.png", "reverse_trajectory.png",
                     "sample_grid.png"}
    import hashlib

    for a in manifest["artifacts"]:
        assert hashlib.sha256((job / a["name"]).read_bytes()).hexdigest() == a["sha256"]
    assert manifest["seeds"]["seed"] == 4 and manifest["spec"]["n"] == 5
    assert {"torch", "python"} <= set(manifest["packages"]) and manifest["device"]["type"] == "cpu"
    assert manifest["device"]["capability"] == torch.backends.cpu.get_cpu_capability()


def test_run_yaml_spec_equals_sample_command(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("kind: sample\nprocess: ve\ndata: digits\nn: 3\nsteps: 15\nseed: 2\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["sample", "--process", "ve", "--data", "digits", "--n", "3", "--steps", "15", "--seed", "2",
                 "--out", str(tmp_path / "b"), "--quiet"]) == 0
    (ma,), (mb,) = _manifests(tmp_path / "a"), _manifests(tmp_path / "b")
    with np.load(ma.parent / "samples.npz") as fa, np.load(mb.parent / "samples.npz") as fb:
        assert np.array_equal(fa["samples"], fb["samples"])


BAD = [
    (["--process", "nope", "--data", "digits"], "process"),
    (["--process", "vp", "--data", "digits", "--steps", "-3"], "steps"),
    (["--process", "vp", "--data", "digits", "--steps", "5000"], "steps"),
    (["--process", "vp", "--data", "digits", "--n", "0"], "n:"),
    (["--process", "vp", "--data", "digits", "--param", "schedule=custom", "--param", "betas=[0.1, -0.05, 0.2]"],
     "sigma_{t|s}^2 < 0"),
    (["--process", "vp", "--data", "imagenet"], "data"),
    (["--process", "blurring", "--data", "digits", "--sampler", "ddim"], "sampler"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_exit_2_and_no_manifest(tmp_path, capsys, args, needle):
    rc = main(["sample", *args, "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert _manifests(tmp_path) == []


def test_missing_data_set_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(datasets.FASHION_DIR_ENV, str(tmp_path / "nowhere"))
    datasets._fashion.cache_clear()
    try:
        rc = main(["sample", "--process", "vp", "--data", "fashion-mnist", "--n", "1", "--steps", "2",
                   "--out", str(tmp_path / "out"), "--quiet"])
    finally:
        datasets._fashion.cache_clear()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "apt-get install dataset-fashion-mnist" in err and len(err.splitlines()) == 1
    assert _manifests(tmp_path) == []


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = main(["sample", "--process", "vp", "--data", "digits", "--n", "1", "--steps", "2",
               "--out", str(blocker / "results"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not writable" in err and "--out" in err


def test_failed_job_leaves_no_half_written_results(tmp_path, monkeypatch):
    from scalespace.jobs import run_job
    from scalespace.jobs import sample as sample_mod
    from scalespace.storage import LocalStore

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sample_mod, "grid_png", boom)  # fails after samples.npz was written
    with pytest.raises(RuntimeError):
        run_job({"kind": "sample", "process": "vp", "data": "digits", "n": 2, "steps": 3}, LocalStore(tmp_path),
                job_id="job-1")
    assert not (tmp_path / "job-1").exists()


def test_console_script_exit_code():
    r = subprocess.run([sys.executable, "-m", "scalespace.cli", "sample", "--process", "nope", "--data", "digits"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("scalespace: error: process")


def test_processes_lists_every_process(capsys):
    assert main(["processes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["process"] for r in rows] == ["vp", "ve", "blurring", "heat", "osmosis"]
    assert rows[0]["defaults"]["T"] == 1000 and rows[3]["defaults"]["K"] == 100


def test_version_flag(capsys):
    import scalespace

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"scalespace {scalespace.__version__}"


def test_every_flag_and_argument_has_help():
    import argparse

    from scalespace.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "scalespace")
    assert missing == []


def test_job_id_first_and_ctrl_c_says_what_next(tmp_path, capsys, monkeypatch):
    """Every embedded job prints its id when it starts; Ctrl-C on train says how to resume, on sample that
    nothing was kept."""
    import scalespace.jobs.run as run_module
    from scalespace.jobs.context import Progress

    def interrupted(spec, store, progress=None, **kwargs):
        progress(Progress(kwargs["job_id"], "load", 0, 1))  # the job started ...
        raise KeyboardInterrupt  # ... and the user pressed Ctrl-C

    monkeypatch.setattr(run_module, "run_job", interrupted)
    code = main(["train", "--process", "vp", "--data", "digits", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130
    first, *_ = err.splitlines()
    job_id = first.split()[2].rstrip(":")
    assert first.startswith("train job train-") and f"--job-id {job_id}" in err and "resume" in err
    code = main(["sample", "--process", "vp", "--data", "digits", "--n", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130 and err.startswith("sample job sample-") and "no results" in err
