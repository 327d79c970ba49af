"""`scalespace score A B`: every kind of input, the table and --json, one-line errors, and `sample --quality`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scalespace.cli import build_parser, main
from scalespace.storage import LocalStore

TOKEN = "unit-token"  # as in tests/unit/conftest.py
SMALL = ["--features", "pixels", "--kid-subset-size", "10", "--kid-subsets", "5", "--fid-boot", "5", "--quiet"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _on_grid(n: int, seed: int, shape: tuple[int, int, int] = (1, 8, 8)) -> np.ndarray:
    p = np.random.default_rng(seed).integers(0, 256, size=(n, *shape))
    return (p / 127.5 - 1.0).astype(np.float32)


def _pngs(folder, x: np.ndarray) -> str:
    folder.mkdir()
    for i, img in enumerate(x):
        p = np.rint((img + 1.0) * 127.5).astype(np.uint8)
        Image.fromarray(p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
    return str(folder)


def _score_json(capsys, *args: str) -> dict:
    assert main(["score", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _fake_sample_job(root, job_id: str, samples: np.ndarray, kind: str = "sample") -> None:
    """A committed job in a local results folder: its samples.npz and the manifest naming it."""
    import io

    store = LocalStore(root)
    artifacts = []
    if samples is not None:
        buf = io.BytesIO()
        np.savez(buf, samples=samples)
        artifacts.append(store.put("jobs", job_id, "samples.npz", buf.getvalue()).to_dict())
    store.put_json("jobs", job_id, "manifest.json", {"job_id": job_id, "kind": kind, "artifacts": artifacts})


def test_png_folder_npz_and_job_id_read_the_same_images(tmp_path, capsys):
    x = _on_grid(40, 0)
    np.savez(tmp_path / "samples.npz", samples=x)
    folder = _pngs(tmp_path / "pngs", x)
    out = str(tmp_path / "results")
    _fake_sample_job(out, "sample-1", x)
    r = _score_json(capsys, folder, str(tmp_path / "samples.npz"), *SMALL, "--out", out)
    assert r["a"]["kind"] == "png folder" and r["b"]["kind"] == "npz"
    assert r["a"]["sha256"] == r["b"]["sha256"]  # the same float32 images either way
    assert r["fid"]["fid"] == pytest.approx(0.0, abs=1e-9)
    assert r["precision_recall"]["precision"]["value"] == 1.0 and r["precision_recall"]["recall"]["value"] == 1.0
    r = _score_json(capsys, "sample-1", folder, *SMALL, "--out", out)
    assert r["a"]["kind"] == "job" and r["a"]["sha256"] == r["b"]["sha256"] and r["a"]["n"] == 40


def test_data_set_halves_and_a_shifted_set(tmp_path, capsys):
    out = str(tmp_path / "results")
    r = _score_json(capsys, "digits:train[0:300]", "digits:train[300:600]", *SMALL, "--out", out)
    assert r["a"]["n"] == r["b"]["n"] == 300 and r["dim"] == 64
    assert r["kid"]["low"] < 0 < r["kid"]["high"]
    base = r["fid"]["fid"]
    x = np.clip(_on_grid(300, 1) * 0 + 0.5, -1, 1)  # a flat grey set: far from digits
    np.savez(tmp_path / "flat.npz", samples=x)
    far = _score_json(capsys, str(tmp_path / "flat.npz"), "digits:train[300:600]", *SMALL, "--out", out)
    assert far["fid"]["fid"] > 10 * base and far["precision_recall"]["precision"]["value"] < 0.5


def test_npz_slice_and_the_table(tmp_path, capsys):
    np.savez(tmp_path / "s.npz", samples=_on_grid(50, 2))
    assert main(["score", f"{tmp_path / 's.npz'}[0:20]", "digits:heldout", *SMALL, "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "A: " in text and "20 images of 1x8x8" in text and "B: digits:heldout (data set): 360 images" in text
    for row in ("FID", "KID", "precision", "recall", "95% interval", "bootstrap, 5 resamples", "Wilson"):
        assert row in text


def _error(capsys, *args: str) -> str:
    assert main(["score", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scalespace: error: ")
    return err


def test_bad_inputs_are_one_line_errors_naming_the_argument(tmp_path, capsys):
    out = ["--out", str(tmp_path / "results"), *SMALL]
    np.savez(tmp_path / "ok.npz", samples=_on_grid(10, 3))
    ok = str(tmp_path / "ok.npz")
    err = _error(capsys, str(tmp_path / "missing"), ok, *out)
    assert "A: '" in err and "does not exist; pass an existing folder" in err
    np.savez(tmp_path / "bad.npz", images=_on_grid(10, 3))
    err = _error(capsys, ok, str(tmp_path / "bad.npz"), *out)
    assert "B: " in err and "has no array 'samples'" in err and "numpy.savez(path, samples=array)" in err
    assert "A: unknown data set 'mnist'; choose one of" in _error(capsys, "mnist:train", ok, *out)
    assert "B: unknown split 'test' of digits; choose one of train, heldout" in _error(capsys, ok, "digits:test", *out)
    err = _error(capsys, "sample-nope", ok, *out)
    assert "A: unknown job id 'sample-nope'" in err and "pass --out" in err and "--api" in err
    _fake_sample_job(tmp_path / "results", "evaluate-1", None, kind="evaluate")
    assert "A: job evaluate-1 (evaluate) has no samples.npz" in _error(capsys, "evaluate-1", ok, *out)
    np.savez(tmp_path / "three.npz", samples=_on_grid(3, 4))
    err = _error(capsys, ok, str(tmp_path / "three.npz"), *out)
    assert "B: 3 image(s) are too few for the statistics; pass at least 4" in err
    err = _error(capsys, ok, "digits:heldout", *out, "--data-size", "16")
    assert "B: images are 1x16x16 (CxHxW) but A's are 1x8x8" in err and "--features inception" in err
    assert "--fid-boot: pass 0" in _error(capsys, ok, ok, *out, "--fid-boot", "1")
    assert "--level: must lie between 0 and 1" in _error(capsys, ok, ok, *out, "--level", "95")


def test_unknown_job_id_through_the_api(live_api, tmp_path, monkeypatch, capsys):
    from scalespace.config import get_settings

    monkeypatch.setenv("SCALESPACE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    try:
        np.savez(tmp_path / "ok.npz", samples=_on_grid(10, 3))
        err = _error(capsys, "sample-nope", str(tmp_path / "ok.npz"), "--api", live_api, *SMALL)
        assert "A: unknown job id 'sample-nope' at " in err and "scalespace jobs --api URL" in err
    finally:
        get_settings.cache_clear()


def test_inception_features_on_a_few_images_and_their_cache(tmp_path, capsys):
    """The real Inception network, 8 Fashion-MNIST images scored against themselves."""
    out = str(tmp_path / "results")
    args = ["fashion-mnist:heldout[0:8]", "fashion-mnist:heldout[0:8]", "--fid-boot", "0", "--kid-subset-size", "4",
            "--kid-subsets", "3", "--batch-size", "4", "--device", "cpu", "--quiet", "--out", out]
    r = _score_json(capsys, *args)
    assert r["features"] == "inception" and r["dim"] == 2048 and r["a"]["n"] == 8
    assert not r["a"]["cached"] and r["b"]["cached"]  # B's images are A's: features computed once
    assert r["fid"]["fid"] < 1.0  # against itself (2048 dimensions, 8 images: rounding only)
    assert r["precision_recall"]["precision"]["value"] == 1.0
    assert len(list((tmp_path / "results" / "_cache").iterdir())) == 1


def test_sample_quality_flag_goes_into_the_spec(monkeypatch):
    import scalespace.cli.embedded as embedded

    seen = {}
    monkeypatch.setattr(embedded, "run_and_report", lambda spec, out, quiet=False: seen.update(spec) or 0)
    assert main(["sample", "--process", "vp", "--data", "digits", "--quality", "fd,fid"]) == 0
    assert seen["quality"] == ["fd", "fid"]
    seen.clear()
    assert main(["sample", "--process", "vp", "--data", "digits"]) == 0
    assert "quality" not in seen  # the spec's default (fd)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["sample", "--process", "vp", "--data", "digits", "--quality", "is"])
    assert e.value.code == 2


def test_every_score_flag_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for action in sub.choices["score"]._actions:
        assert action.help, action.dest
