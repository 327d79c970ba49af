"""The `train` job through run_job: resume after a crash, sampling from the model, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as st_load

from scalespace.cli import main as cli
from scalespace import ScalespaceError
from scalespace.data import dataset_shape, load_dataset
from scalespace.denoisers.checkpoints import WEIGHTS, load_model
from scalespace.jobs import JobStopped, parse_spec, run_job
from scalespace.jobs.images import from_npz
from scalespace.jobs.sample import process_for
from scalespace.jobs.train import CHECKPOINT
from scalespace.sampling.pipeline import generate


def _weights(store, model_id: str) -> dict[str, torch.Tensor]:
    return st_load(store.get("models", model_id, WEIGHTS))


def _stop_at(step: int):
    """A should_stop that fires at the first check after `step` training steps (a crash mid-run)."""
    seen = {"n": 0}

    def progress(p):
        if p.phase == "train":
            seen["n"] = p.done

    def should_stop():
        return "killed" if seen["n"] >= step else None

    return progress, should_stop


def test_resumed_run_ends_where_an_uninterrupted_one_does(store, make_train_spec):
    spec = make_train_spec("vp", steps=12, checkpoint_every=4, log_every=2)
    progress, should_stop = _stop_at(6)
    with pytest.raises(JobStopped):
        run_job(spec, store, progress, job_id="train-resume", should_stop=should_stop)
    assert store.manifest("train-resume") is None  # not complete ...
    assert store.exists("jobs", "train-resume", CHECKPOINT)  # ... but its last checkpoint survived
    resumed = run_job(spec, store, job_id="train-resume")
    assert resumed["summary"]["resumed_from_step"] == 4 and resumed["summary"]["steps"] == 12
    straight = run_job(spec, store, job_id="train-straight")
    assert straight["summary"]["resumed_from_step"] == 0
    a, b = _weights(store, resumed["summary"]["model_id"]), _weights(store, straight["summary"]["model_id"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    curve_a = json.loads(store.get("jobs", "train-resume", "loss_curve.json"))
    curve_b = json.loads(store.get("jobs", "train-straight", "loss_curve.json"))
    assert [s for s, _ in curve_a["points"]] == [2, 4, 6, 8, 10, 12]
    assert [v for _, v in curve_a["points"]] == pytest.approx([v for _, v in curve_b["points"]], rel=1e-6)


def test_resume_refuses_another_spec_under_the_same_id(store, make_train_spec):
    progress, should_stop = _stop_at(4)
    with pytest.raises(JobStopped):
        run_job(make_train_spec("vp", steps=8), store, progress, job_id="train-x", should_stop=should_stop)
    with pytest.raises(ScalespaceError, match="another spec; use a new job id"):
        run_job(make_train_spec("vp", steps=8, seed=1), store, job_id="train-x")


@pytest.mark.parametrize("process", ["vp", "heat"])
def test_sample_job_and_generate_agree(store, make_train_spec, process):
    train = run_job(make_train_spec(process), store, job_id=f"train-{process}")
    model_id = train["summary"]["model_id"]
    assert train["model"]["id"] == model_id
    sample_spec = parse_spec({
        "kind": "sample", "process": process, "process_params": make_train_spec(process)["process_params"],
        "data": "digits", "data_limit": 64, "model": model_id, "n": 5, "batch_size": 3, "seed": 7,
        "steps": 6 if process == "vp" else None, "device": "cpu",
    })
    job = run_job(sample_spec, store, job_id=f"sample-{process}")
    via_job = torch.from_numpy(from_npz(store.get("jobs", job["job_id"], "samples.npz"))["samples"])
    p = process_for(sample_spec, dataset_shape("digits"))
    images = load_dataset("digits", limit=64).images
    direct = generate(p, load_model(model_id, p, store, "cpu"), 5, 7, batch_size=3, steps=sample_spec.steps, train=images)
    assert torch.equal(via_job, direct)
    assert job["summary"]["model"] == {"id": model_id, "digest": json.loads(store.get("models", model_id, "card.json"))["sha256"]}
    assert torch.isfinite(direct).all() and direct.std() > 0


def test_osmosis_trains_and_registers(store, make_train_spec):
    m = run_job(make_train_spec("osmosis", steps=4), store)
    card = json.loads(store.get("models", m["summary"]["model_id"], "card.json"))
    assert card["objective"] == "one_step" and card["process"]["params"]["guidance_seed"] == 0
    assert card["figures"]["evaluation"]["n_samples"] == 8 and card["training"]["steps"] == 4


def test_bad_train_specs_are_one_line_errors(store, make_train_spec):
    with pytest.raises(ScalespaceError, match="network: unknown U-Net field 'width'"):
        parse_spec(make_train_spec("vp", network={"width": 3}))
    with pytest.raises(ScalespaceError, match="guidance: training osmosis needs 'shared'"):
        run_job(make_train_spec("osmosis", process_params={"guidance": "per_sample"}), store)
    with pytest.raises(ScalespaceError, match="'one_step' is for heat and osmosis"):
        run_job(make_train_spec("vp", objective="one_step"), store)
    assert store.list("models") == []


def test_cli_train_models_sample(tmp_path, capsys):
    out = str(tmp_path / "res")
    args = ["--data", "digits", "--data-limit", "64", "--steps", "6", "--batch-size", "8", "--eval-samples", "4",
            "--eval-steps", "3", "--param", "T=20", "--network", "channels=8", "--network", "channel_mults=[1]",
            "--device", "cpu", "--out", out, "--quiet"]
    assert cli(["train", "--process", "vp", *args]) == 0
    printed = capsys.readouterr().out
    model_id = next(w for w in printed.split() if w.startswith("vp-") and len(w) == 19)
    assert f"--model {model_id}" in printed
    assert cli(["models", "--out", out]) == 0
    assert model_id in capsys.readouterr().out
    assert cli(["models", "--out", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == model_id
    sample = ["sample", "--data", "digits", "--model", model_id, "--n", "3", "--steps", "4", "--param", "T=20",
              "--device", "cpu", "--out", out, "--quiet"]
    assert cli(["sample", "--process", "vp", *sample[1:]]) == 0
    assert "sample job" in capsys.readouterr().out
    assert cli(["sample", "--process", "blurring", *sample[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scalespace: error: model:") and "not 'blurring'" in err and "\n" not in err
