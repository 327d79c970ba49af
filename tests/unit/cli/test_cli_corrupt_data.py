"""A corrupt or truncated fashion-mnist file: one line naming the file and the fix, exit 2, no traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scalespace.cli import main
from scalespace.data import datasets

GOOD_LABELS = gzip.compress(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3]))


def _images(n: int, extra: bytes = b"", cut: int = 0) -> bytes:
    raw = bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(n * 28 * 28) + extra
    return gzip.compress(raw[: len(raw) - cut])


def _write(folder: Path, images: bytes, labels: bytes = GOOD_LABELS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(images)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(labels)


CASES = {
    "garbage": (b"this is not a gzip file at all" * 10, GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "gzip of garbage": (gzip.compress(b"\xde\xad\xbe\xef" * 100), GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "truncated gzip": (_images(3)[:-10], GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "truncated data": (_images(3, cut=100), GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "empty": (b"", GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "huge header": (gzip.compress(bytes([0, 0, 8, 3]) + (10**9).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2),
                    GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "wrong image size": (gzip.compress(bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big") + (5).to_bytes(4, "big") * 2
                                       + bytes(75)), GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "trailing bytes": (_images(3, extra=b"more"), GOOD_LABELS, "train-images-idx3-ubyte.gz"),
    "garbage labels": (_images(3), b"\x1f\x8b garbage", "train-labels-idx1-ubyte.gz"),
    "count mismatch": (_images(4), GOOD_LABELS, "train-images-idx3-ubyte.gz"),
}


@pytest.fixture
def fashion_dir(tmp_path, monkeypatch):
    folder = tmp_path / "fashion"
    monkeypatch.setenv(datasets.FASHION_DIR_ENV, str(folder))
    datasets._fashion.cache_clear()
    yield folder
    datasets._fashion.cache_clear()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_corrupt_file_is_one_line_naming_it_and_the_fix(fashion_dir, tmp_path, capsys, case):
    images, labels, named = CASES[case]
    _write(fashion_dir, images, labels)
    rc = main(["sample", "--process", "vp", "--data", "fashion-mnist", "--n", "1", "--steps", "2",
               "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(fashion_dir / named) in err and "apt-get install --reinstall dataset-fashion-mnist" in err, err
    assert datasets.FASHION_DIR_ENV in err
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_a_good_small_file_still_loads(fashion_dir):
    _write(fashion_dir, _images(3))
    split = datasets.load_dataset("fashion-mnist", "train")
    assert split.images.shape == (3, 1, 28, 28) and split.labels.tolist() == [1, 2, 3]
    assert np.allclose(split.images.numpy(), -1.0)


def test_the_console_script_says_it_without_a_traceback(fashion_dir, tmp_path):
    _write(fashion_dir, b"garbage")
    r = subprocess.run([sys.executable, "-m", "scalespace.cli", "sample", "--process", "vp", "--data", "fashion-mnist",
                        "--n", "1", "--steps", "2", "--out", str(tmp_path / "out"), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "train-images-idx3-ubyte.gz" in r.stderr
