"""The captioned pictures: scale_space.png, reverse_trajectory.png and sample_grid.png, in sample and evaluate jobs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalespace.cli import main
from scalespace.data import load_dataset
from scalespace.evaluation import plots
from scalespace.evaluation.pictures import BACKGROUND, PICTURES, grey_levels
from scalespace.jobs import parse_spec, run_job
from scalespace.noise import Stream, normal, uniform_int
from scalespace.processes import make_process
from scalespace.storage import LocalStore

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "data_limit": 64, "n": 6, "steps": 8, "batch_size": 4,
        "seed": 5, "device": "cpu"}


def _job(tmp_path: Path, **over) -> tuple[Path, dict]:
    manifest = run_job({**SPEC, **over}, LocalStore(tmp_path))
    return tmp_path / manifest["job_id"], manifest


def _decode(path: Path) -> tuple[np.ndarray, dict, str]:
    img = Image.open(path)
    img.load()
    assert img.mode == "RGB"
    return np.asarray(img), json.loads(img.text["layout"]), img.text["Description"]


def _cells(arr: np.ndarray, layout: dict) -> list[list[np.ndarray | None]]:
    """Each image of the picture back at its own size (one pixel per enlarged block), or None where none is drawn."""
    cw, ch = layout["cell"]
    s = layout["scale"]
    out = []
    for y in layout["y"]:
        row = []
        for x in layout["x"]:
            block = arr[y: y + ch, x: x + cw]
            if (block == BACKGROUND).all(axis=-1).all():
                row.append(None)
                continue
            # a grey image: r = g = b everywhere, constant on each s x s block
            assert (block[..., 0] == block[..., 1]).all() and (block[..., 1] == block[..., 2]).all()
            small = block[::s, ::s, 0]
            assert np.array_equal(np.repeat(np.repeat(small, s, 0), s, 1), block[..., 0])
            row.append(small)
        out.append(row)
    return out


def _caption_ink(arr: np.ndarray, layout: dict) -> int:
    band = arr[: layout["caption_height"]]
    return int((band != BACKGROUND).any(axis=-1).sum())


def _samples(job: Path) -> np.ndarray:
    with np.load(job / "samples.npz", allow_pickle=False) as f:
        return f["samples"]


def test_pictures_are_written_on_request_only_and_leave_samples_and_hash_alone(tmp_path):
    with_job, with_manifest = _job(tmp_path / "a", pictures=True)
    without_job, without_manifest = _job(tmp_path / "b")
    names_with = {a["name"] for a in with_manifest["artifacts"]}
    names_without = {a["name"] for a in without_manifest["artifacts"]}
    assert set(PICTURES) <= names_with
    assert names_without == {"samples.npz", "grid.png", "trajectory.json"}
    assert names_with - names_without == set(PICTURES)
    for name in PICTURES:
        assert (with_job / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not (without_job / name).exists()
    # recording the reverse trajectory does not change a single sample bit
    assert np.array_equal(_samples(with_job), _samples(without_job))
    assert (with_job / "grid.png").read_bytes() == (without_job / "grid.png").read_bytes()
    # a spec that leaves `pictures` at its default keeps the hash it had before the field existed
    base = parse_spec({k: v for k, v in SPEC.items()})
    assert "pictures" not in base.canonical_dump()
    assert parse_spec({**SPEC, "pictures": False}).spec_hash() == base.spec_hash()
    assert parse_spec({**SPEC, "pictures": True}).spec_hash() != base.spec_hash()
    assert with_manifest["spec"]["pictures"] is True


@pytest.fixture(scope="module")
def picture_job(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    job, _ = _job(tmp_path_factory.mktemp("pictures"), pictures=True)
    return job


def test_forward_scale_space_rows_columns_grey_scale_and_noise(picture_job):
    arr, layout, text = _decode(picture_job / "scale_space.png")
    cells = _cells(arr, layout)
    assert len(cells) == 4 and all(len(r) == 8 for r in cells) and all(c is not None for r in cells for c in r)
    assert layout["image"] == [8, 8] and layout["cell"] == [8 * layout["scale"]] * 2 and layout["scale"] >= 8
    assert arr.shape[0] > layout["y"][-1] + layout["cell"][1] and arr.shape[1] >= layout["x"][-1] + layout["cell"][0]
    train = load_dataset("digits", "train", limit=64).images
    ids = torch.arange(4)
    pick = uniform_int(5, ids, len(train), Stream.DATA_PICK)
    z = normal(5, ids, 0, (1, 8, 8), Stream.FORWARD)
    for r in range(4):
        # t = 0 (vp: sigma_0 = 0) is the data image itself, on the documented grey scale
        assert np.array_equal(cells[r][0], grey_levels(train[pick[r]])[0].numpy())
        # every column moves on along t
        for k in range(7):
            assert not np.array_equal(cells[r][k], cells[r][k + 1])
        # at T (abar_T = 4e-5) vp's state is the noise z: within a grey level or two of it, nothing like the data
        last = cells[r][-1].astype(int)
        assert np.abs(last - grey_levels(z[r])[0].numpy().astype(int)).max() <= 2
        assert np.abs(last - cells[r][0].astype(int)).mean() > 40
    assert _caption_ink(arr, layout) > 500
    assert "Forward scale-space of vp on digits" in text
    assert "model oracle, sampler ancestral, 8 reverse steps, seed 5" in text and "clipped" in text
    # the column labels are drawn above the images: ink between the caption and the first row
    assert (arr[layout["caption_height"]: layout["y"][0]] != BACKGROUND).any(axis=-1).sum() > 100


def test_reverse_trajectory_starts_at_the_prior_and_ends_at_the_samples(picture_job):
    arr, layout, text = _decode(picture_job / "reverse_trajectory.png")
    cells = _cells(arr, layout)
    assert len(cells) == 8 and all(len(r) == 8 for r in cells)  # two rows for each of 4 samples, 8 of the 9 indices
    samples = _samples(picture_job)
    process = make_process("vp", (1, 8, 8), {})
    for k in range(4):
        state, estimate = cells[2 * k], cells[2 * k + 1]
        # the start state: sigma_T z of the prior stream
        prior = process.sigma(process.T) * normal(5, torch.tensor([k]), process.T, (1, 8, 8), Stream.PRIOR)[0]
        assert np.array_equal(state[0], grey_levels(prior)[0].numpy())
        # the last column: the sample, its own estimate
        assert np.array_equal(state[-1], grey_levels(torch.from_numpy(samples[k]))[0].numpy())
        assert np.array_equal(estimate[-1], state[-1])
        # the denoiser's estimate from the noise looks nothing like the noise
        assert np.abs(estimate[0].astype(int) - state[0].astype(int)).mean() > 30
    # samples of different rows differ
    assert not np.array_equal(cells[0][-1], cells[2][-1])
    assert _caption_ink(arr, layout) > 500 and "Reverse trajectory of vp on digits" in text and "seed 5" in text
    assert layout["y"][2] - layout["y"][1] > layout["y"][1] - layout["y"][0]  # a wider gap between samples


def test_sample_grid_is_big_and_captioned(picture_job):
    arr, layout, text = _decode(picture_job / "sample_grid.png")
    cells = _cells(arr, layout)
    assert len(cells) == 2 and len(cells[0]) == 3  # 6 samples, 3 a row
    samples = _samples(picture_job)
    for k in range(6):
        assert np.array_equal(cells[k // 3][k % 3], grey_levels(torch.from_numpy(samples[k]))[0].numpy())
    assert layout["cell"][0] >= 96 and arr.shape[1] >= 500
    grid = Image.open(picture_job / "grid.png")
    assert arr.shape[1] > 2 * grid.width
    assert _caption_ink(arr, layout) > 500 and "samples 0 to 5 of 6" in text and "sampler ancestral" in text


def _names(root: Path) -> tuple[dict, set[str]]:
    (path,) = list(root.rglob("manifest.json"))
    manifest = json.loads(path.read_text())
    return manifest, {a["name"] for a in manifest["artifacts"]}


def test_the_command_line_makes_pictures_unless_told_not_to(tmp_path):
    args = ["sample", "--process", "heat", "--data", "digits", "--n", "2", "--steps", "4", "--data-limit", "32",
            "--param", "K=8", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "on")]) == 0
    manifest, names = _names(tmp_path / "on")
    assert set(PICTURES) <= names and manifest["spec"]["pictures"] is True
    assert main([*args, "--no-pictures", "--out", str(tmp_path / "off")]) == 0
    manifest_off, names_off = _names(tmp_path / "off")
    assert not set(PICTURES) & names_off and manifest_off["spec"]["pictures"] is False
    on = next((tmp_path / "on").rglob("samples.npz"))
    off = next((tmp_path / "off").rglob("samples.npz"))
    assert np.array_equal(np.load(on)["samples"], np.load(off)["samples"])


EVALUATE = {"kind": "evaluate", "process": "vp", "data": "digits", "data_limit": 128, "n": 16, "eval_steps": 4,
            "n_reverse": 8, "reverse_steps": 5, "device": "cpu", "seed": 2}


def test_the_evaluate_report_embeds_the_pictures(tmp_path):
    manifest = run_job({**EVALUATE, "checks": ["forward", "reverse"]}, LocalStore(tmp_path))
    job = tmp_path / manifest["job_id"]
    names = {a["name"] for a in manifest["artifacts"]}
    assert set(PICTURES) <= names
    html = (job / "report.html").read_text()
    assert "<h2>Pictures</h2>" in html
    for name in PICTURES:
        png = (job / name).read_bytes()
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in html
    assert html.count("data:image/png;base64,") == len([n for n in names if n.endswith(".png")])
    arr, layout, text = _decode(job / "sample_grid.png")
    assert len([c for r in _cells(arr, layout) for c in r if c is not None]) == 8  # the reverse checks' 8 samples
    arr, layout, text = _decode(job / "reverse_trajectory.png")
    assert "5 reverse steps" in text and "seed 2" in text and len(layout["y"]) == 8
    # without a denoiser (forward only) there is no reverse run: the forward scale-space alone
    manifest = run_job({**EVALUATE, "checks": ["forward"]}, LocalStore(tmp_path / "forward"))
    names = {a["name"] for a in manifest["artifacts"]}
    assert "scale_space.png" in names and not {"reverse_trajectory.png", "sample_grid.png"} & names


def test_variance_plot_labels_its_axes_and_an_empty_sensitivity_plot_is_left_out(monkeypatch):
    axes = []
    real = plots.plt.subplots

    def spy(*a, **k):
        fig, ax = real(*a, **k)
        axes.append(ax)
        return fig, ax

    monkeypatch.setattr(plots.plt, "subplots", spy)
    rows = [{"index": i, "t": float(i), "mean": 0.1 * i, "variance": 1.0 + i, "pixel_variance": 0.5 + i} for i in range(4)]
    assert plots.variance_plot({"trajectory": rows}) is not None
    assert axes[-1].get_xlabel() and axes[-1].get_ylabel()
    flat = {"sampler": "ddim", "steps": 4, "n": 8, "slope": None,
            "rows": [{"eps": e, "distance_mean": 0.0, "distance_median": 0.0, "distance_max": 0.0} for e in (0.01, 1.0)]}
    assert plots.sensitivity_plot({"robustness": {"sensitivity": [flat]}}) is None
    moved = {**flat, "slope": 1.0, "rows": [{**r, "distance_mean": r["eps"]} for r in flat["rows"]]}
    assert plots.sensitivity_plot({"robustness": {"sensitivity": [flat, moved]}})[:8] == b"\x89PNG\r\n\x1a\n"
    assert axes[-1].get_xlabel() and axes[-1].get_ylabel()
