"""Scoring two image sets: FID, KID and precision/recall with intervals, the input readers, the feature cache."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from scalespace import ScalespaceError
from scalespace.stats.features import get_extractor
from scalespace.stats.reference_cache import content_features, content_key
from scalespace.stats.score import (
    dataset_images,
    fid_with_interval,
    kid_with_interval,
    parse_dataset,
    precision_recall,
    read_png_folder,
    read_samples_npz,
    score_features,
    wilson_interval,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


# --- FID -------------------------------------------------------------------------------------
def test_fid_of_a_set_against_itself_is_zero_and_a_shift_is_seen():
    a = _gauss(400, 8, 0)
    same = fid_with_interval(a, a, n_boot=0)
    assert same["fid"] == pytest.approx(0.0, abs=1e-9) and same["low"] is None
    shifted = fid_with_interval(a, a + 0.5, n_boot=0)
    # the means differ by 0.5 in each of 8 dimensions and the covariances are equal: FID = 8 * 0.25
    assert shifted["fid"] == pytest.approx(2.0, rel=1e-9)


def test_fid_interval_is_debiased_and_covers_fresh_repeats():
    a, b = _gauss(300, 6, 1), _gauss(300, 6, 2, shift=0.3)
    r = fid_with_interval(a, b, n_boot=200, seed=0)
    assert r["bootstrap_bias"] > 0  # resamples with duplicates read higher
    assert r["low"] < r["fid"] < r["high"]
    # the FID of fresh samples of the same sizes falls inside most of the time
    inside = 0
    for s in range(20):
        inside += r["low"] <= fid_with_interval(_gauss(300, 6, 100 + s), _gauss(300, 6, 200 + s, 0.3), n_boot=0)["fid"] <= r["high"]
    assert inside >= 15


def test_fid_boot_of_one_is_refused():
    with pytest.raises(ScalespaceError, match="fid_boot"):
        fid_with_interval(_gauss(10, 2, 0), _gauss(10, 2, 1), n_boot=1)


# --- KID -------------------------------------------------------------------------------------
def test_kid_is_about_zero_for_one_distribution_and_its_interval_contains_zero():
    x = _gauss(800, 16, 3)
    r = kid_with_interval(x[:400], x[400:], subset_size=100, n_subsets=50)
    assert abs(r["kid"]) < 0.02
    assert r["low"] < 0 < r["high"] and r["std"] > 0 and r["subset_size"] == 100
    far = kid_with_interval(x[:400], x[400:] + 1.0, subset_size=100, n_subsets=50)
    assert far["low"] > r["high"]


# --- precision and recall --------------------------------------------------------------------
def test_precision_and_recall_are_one_for_identical_sets():
    x = _gauss(200, 5, 4)
    r = precision_recall(x, x.clone(), k=3)
    assert r["precision"]["value"] == 1.0 and r["recall"]["value"] == 1.0
    assert r["precision"]["high"] == 1.0 and r["precision"]["low"] < 1.0


def test_precision_drops_for_a_mode_the_reference_lacks_and_recall_for_a_missed_one():
    real = _gauss(300, 4, 5)
    extra = _gauss(100, 4, 6, shift=20.0)  # a mode far from everything else
    fake = torch.cat([_gauss(300, 4, 7), extra])
    r = precision_recall(fake, real, k=3)
    assert r["precision"]["value"] < 0.8 and r["recall"]["value"] > 0.9
    assert r["precision"]["count"] <= 300
    r2 = precision_recall(real, fake, k=3)  # now the reference holds the mode the samples miss
    assert r2["recall"]["value"] < 0.8 and r2["precision"]["value"] > 0.9


def test_precision_recall_needs_more_images_than_k():
    with pytest.raises(ScalespaceError, match=r"^A: 3 images are too few .* k = 3"):
        precision_recall(_gauss(3, 2, 0), _gauss(10, 2, 1), k=3)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0


def test_score_features_collects_every_figure_and_warns_on_small_sets():
    a, b = _gauss(60, 4, 8), _gauss(60, 4, 9)
    r = score_features(a, b, kid_subset_size=20, kid_subsets=10, fid_boot=10)
    assert {"fid", "kid", "precision_recall", "n_a", "n_b", "dim"} <= set(r)
    assert r["n_a"] == r["n_b"] == 60 and r["dim"] == 4
    assert any("fewer than 2048" in w for w in r["warnings"])
    with pytest.raises(ScalespaceError, match="^B: features of dimension 5 differ from A's 4"):
        score_features(a, _gauss(60, 5, 9))


# --- readers ---------------------------------------------------------------------------------
def _on_grid(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Images whose values are exactly 8-bit levels p / 127.5 - 1 (what a PNG can hold)."""
    p = np.random.default_rng(seed).integers(0, 256, size=shape)
    return (p / 127.5 - 1.0).astype(np.float32)


def _write_pngs(folder, x: np.ndarray) -> None:
    folder.mkdir()
    for i, img in enumerate(x):
        p = np.rint((img + 1.0) * 127.5).astype(np.uint8)
        Image.fromarray(p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")


@pytest.mark.parametrize("channels", [1, 3])
def test_png_folder_round_trip_equals_npz(tmp_path, channels):
    x = _on_grid((6, channels, 9, 7), seed=channels)
    np.savez(tmp_path / "samples.npz", samples=x)
    _write_pngs(tmp_path / "pngs", x)
    from_png = read_png_folder(tmp_path / "pngs", "A")
    from_npz = read_samples_npz(tmp_path / "samples.npz", "A")
    assert from_png.shape == (6, channels, 9, 7)
    assert torch.equal(from_png, from_npz) and torch.equal(from_npz, torch.from_numpy(x))


def test_png_folder_maps_16_bit_grey_and_mixed_modes(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(folder / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / "b.png")
    x = read_png_folder(folder, "B")
    assert x.shape == (2, 3, 4, 4)  # grey becomes grey RGB beside a colour image
    assert torch.equal(x[0], torch.ones(3, 4, 4)) and torch.equal(x[1], -torch.ones(3, 4, 4))


def test_png_folder_errors_name_the_argument(tmp_path):
    with pytest.raises(ScalespaceError, match=r"^A: folder '.*nowhere' does not exist; pass an existing folder"):
        read_png_folder(tmp_path / "nowhere", "A")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScalespaceError, match="^B: folder .* holds no .png files"):
        read_png_folder(tmp_path / "empty", "B")
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(sizes / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(sizes / "b.png")
    with pytest.raises(ScalespaceError, match="^A: images of different sizes .* resize them"):
        read_png_folder(sizes, "A")


def test_samples_npz_errors(tmp_path):
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(ScalespaceError, match=r"^A: .* has no array 'samples' \(it holds \['images'\]\)"):
        read_samples_npz(tmp_path / "other.npz", "A")
    np.savez(tmp_path / "obj.npz", samples=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ScalespaceError, match="^A: cannot read"):
        read_samples_npz(tmp_path / "obj.npz", "A")
    np.savez(tmp_path / "uint8.npz", samples=np.full((2, 1, 4, 4), 200, np.uint8))
    with pytest.raises(ScalespaceError, match=r"not images on the \[-1, 1\] scale; convert uint8"):
        read_samples_npz(tmp_path / "uint8.npz", "B")
    buf = io.BytesIO()
    np.savez(buf, samples=np.zeros((2, 2, 4, 4), np.float32))
    with pytest.raises(ScalespaceError, match=r"C = 1 or 3"):
        read_samples_npz(buf.getvalue(), "B")


def test_data_set_arguments():
    assert parse_dataset("fashion-mnist:train[0:5000]") == ("fashion-mnist", "train", 0, 5000)
    assert parse_dataset("digits:heldout") == ("digits", "heldout", None, None)
    assert parse_dataset("samples.npz") is None
    x = dataset_images("digits:train[10:20]", "A")
    assert x.shape == (10, 1, 8, 8)
    from scalespace.data import load_dataset

    assert torch.equal(x, load_dataset("digits", "train").images[10:20])
    assert dataset_images("digits:heldout", "A", size=16).shape[-1] == 16
    with pytest.raises(ScalespaceError, match="^A: unknown data set 'mnist'; choose one of fashion-mnist, digits"):
        dataset_images("mnist:train", "A")
    with pytest.raises(ScalespaceError, match="^B: unknown split 'test' of digits; choose one of train, heldout"):
        dataset_images("digits:test", "B")
    with pytest.raises(ScalespaceError, match=r"^A: the slice \[5:5\] of digits:train is empty"):
        dataset_images("digits:train[5:5]", "A")
    with pytest.raises(ScalespaceError, match="fewer than the slice's end 5000; pass an end of at most 360"):
        dataset_images("digits:heldout[0:5000]", "A")


# --- the feature cache and progress ----------------------------------------------------------
def test_content_features_are_cached_by_content_and_report_progress(store):
    ex = get_extractor("random-conv", batch_size=4)
    x = torch.rand(10, 1, 8, 8) * 2 - 1
    calls = []
    f1, _, cached1 = content_features(x, ex, store, progress=lambda d, t: calls.append((d, t)))
    assert not cached1 and calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    calls.clear()
    f2, _, cached2 = content_features(x.clone(), ex, store, progress=lambda d, t: calls.append((d, t)))
    assert cached2 and calls == [] and torch.equal(f1, f2)
    assert store.exists("cache", content_key(x, ex), "features.npz")
    # other images, or the same images in another order, are another entry
    assert content_key(x.flip(0), ex) != content_key(x, ex)
    _, _, cached3 = content_features(x.flip(0), ex, store)
    assert not cached3
    # pixels are the images: never cached
    _, _, cached4 = content_features(x, "pixels", store)
    assert not cached4 and not store.exists("cache", content_key(x, get_extractor("pixels")), "features.npz")
