"""The counter-based noise (scalespace.noise): Philox known answers, per-sample independence of the batch."""

import torch

from scalespace.noise import NoiseSource, Stream, counter_words, normal, philox4x32, seed_words, uniform_int


def test_philox_known_answers():
    # Random123 philox4x32-10 known-answer vectors (counter, key) -> output
    z = torch.zeros(1, dtype=torch.int64)
    assert [int(x) for x in philox4x32(z, z, z, z, 0)] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    pi = [torch.tensor([c], dtype=torch.int64) for c in (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)]
    key = 0xA4093822 | (0x299F31D0 << 32)
    assert seed_words(key) == (0xA4093822, 0x299F31D0)
    assert [int(x) for x in philox4x32(*pi, key)] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_noise_depends_only_on_seed_sample_and_step():
    a = normal(7, torch.arange(10), 3, (1, 8, 8))
    b = normal(7, torch.tensor([4, 9]), 3, (1, 8, 8))
    assert torch.equal(a[4], b[0]) and torch.equal(a[9], b[1])
    assert not torch.equal(a[4], normal(7, torch.tensor([4]), 4, (1, 8, 8))[0])
    assert not torch.equal(a[4], normal(8, torch.tensor([4]), 3, (1, 8, 8))[0])
    big = normal(1, torch.arange(200), 0, (1, 28, 28))
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1) < 0.01


def test_counters_and_streams():
    """The counter of elements 4n..4n+3 of sample k is (n, k mod 2^32, step, stream); streams are independent."""
    ids = torch.tensor([5, 2**32 + 5])
    w = counter_words(torch.zeros(2, dtype=torch.int64), ids, 3, int(Stream.PRIOR), 9)
    assert all(int(x[0]) == int(x[1]) for x in w)  # only the low 32 bits of a sample id count
    src = NoiseSource(9, torch.tensor([5, 6]), (1, 4, 4))
    assert torch.equal(src(3, Stream.PRIOR), normal(9, torch.tensor([5, 6]), 3, (1, 4, 4), Stream.PRIOR))
    assert not torch.equal(src(3, Stream.PRIOR), src(3, Stream.STEP))
    picks = uniform_int(9, torch.arange(1000), 7, Stream.DATA_PICK)
    assert picks.min() == 0 and picks.max() == 6 and torch.equal(picks, uniform_int(9, torch.arange(1000), 7, Stream.DATA_PICK))
