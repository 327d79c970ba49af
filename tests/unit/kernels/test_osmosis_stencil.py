"""Several explicit osmosis steps per launch, against osmosis_scheme's step loop."""

import pytest
import torch

from scalespace.kernels import dispatch
from scalespace.kernels.osmosis_stencil import osmosis_explicit_reference, osmosis_explicit_triton
from scalespace.processes import osmosis_scheme as scheme


def steps_for(d, t, dtype):
    bound = d.stable_tau()
    n = torch.ceil(t / bound).to(torch.int64).clamp_min(1)
    return (t / n.to(dtype)).reshape(n.shape + (1, 1, 1)), n


@pytest.mark.parametrize("shape,per_sample", [((3, 1, 8, 8), False), ((4, 3, 7, 9), True), ((2, 1, 28, 28), False), ((1, 2, 1, 6), True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stencil_bit_identical(gen, shape, per_sample, dtype):
    u = torch.rand(shape, generator=gen, dtype=dtype) + 1.0
    v = torch.rand(((shape[0] if per_sample else 1),) + shape[1:], generator=gen, dtype=dtype) + 0.5
    d = scheme.drift(v)
    tau, n = steps_for(d, 2.3, dtype)
    if per_sample:
        assert n.numel() == shape[0]
    got = osmosis_explicit_triton(u, d, tau, n)
    ref = osmosis_explicit_reference(u, d, tau, n)
    assert torch.isfinite(got).all()
    assert torch.equal(got, ref)  # same operations, same order, no contraction in the interpreter


def test_stencil_uneven_step_counts_and_mass(gen):
    u = torch.rand(3, 1, 10, 12, generator=gen, dtype=torch.float64) + 1.0
    v = torch.rand(3, 1, 10, 12, generator=gen, dtype=torch.float64) + 0.5
    d = scheme.drift(v)
    tau = torch.tensor([0.05, 0.07, 0.02], dtype=torch.float64).reshape(3, 1, 1, 1)
    n = torch.tensor([3, 11, 7])
    got = osmosis_explicit_triton(u, d, tau, n)
    assert torch.equal(got, osmosis_explicit_reference(u, d, tau, n))
    assert torch.equal(osmosis_explicit_triton(u, d, tau, n, l1=True), got)  # the L1-cached neighbour reads
    # other tilings (one image a program, or several): the same bits
    for lanes in (128, 256, 1024):
        assert torch.equal(osmosis_explicit_triton(u, d, tau, n, lanes=lanes, num_warps=8), got)
    with pytest.raises(ValueError, match="lanes must be a power of 2"):
        osmosis_explicit_triton(u, d, tau, n, lanes=1000)
    assert torch.allclose(got.sum(dim=(1, 2, 3)), u.sum(dim=(1, 2, 3)), rtol=1e-13)  # osmosis keeps the mass


def test_evolve_explicit_runs_the_dispatch_it_is_given(gen, monkeypatch):
    """The process layer never picks: evolve_explicit runs the loop it is given (the torch loop by default),
    and a process bound to the dispatch evolves through the kernel, with the same bits."""
    from scalespace.kernels import osmosis_stencil
    from scalespace.processes import make_process

    assert osmosis_explicit_reference is scheme.explicit_steps  # one torch definition of the loop
    u = torch.rand(2, 1, 9, 9, generator=gen, dtype=torch.float64) + 1.0
    d = scheme.drift(torch.rand(1, 1, 9, 9, generator=gen, dtype=torch.float64) + 0.5)
    ref = scheme.evolve_explicit(u, d, 1.7)
    launches = []
    real = osmosis_stencil.osmosis_explicit_triton
    monkeypatch.setattr(osmosis_stencil, "osmosis_explicit_triton", lambda *a, **k: launches.append(1) or real(*a, **k))
    with dispatch.override(kernels="triton"):
        assert torch.equal(scheme.evolve_explicit(u, d, 1.7), ref) and launches == []
        assert torch.equal(scheme.evolve_explicit(u, d, 1.7, run=dispatch.osmosis_explicit), ref) and launches == [1]
        p = make_process("osmosis", (1, 9, 9), {"K": 3, "t_max": 2.0})
        alone = p.marginal_mean(3, u - 2.0)
        assert len(launches) == 1  # the process's own torch loop
        assert torch.equal(dispatch.bind(p).marginal_mean(3, u - 2.0), alone) and len(launches) == 4


@pytest.mark.parametrize("h,pow2", [(1.0, True), (0.5, True), (0.25, True), (0.3, False), (1 / 28, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid_spacing_power_of_two_path_is_bit_identical(gen, h, pow2, dtype):
    """For h a power of 2 the kernel multiplies by exact reciprocals instead of dividing: same bits."""
    from scalespace.kernels.osmosis_stencil import _power_of_two

    assert _power_of_two(h, dtype) is pow2
    u = torch.rand(3, 1, 7, 9, generator=gen, dtype=dtype) + 1.0
    d = scheme.drift(torch.rand(1, 1, 7, 9, generator=gen, dtype=dtype) + 0.5, h=h)
    tau, n = steps_for(d, 0.9 * h * h, dtype)
    assert int(n.max()) >= 2
    got = osmosis_explicit_triton(u, d, tau, n)
    assert torch.isfinite(got).all() and not torch.equal(got, u)
    assert torch.equal(got, osmosis_explicit_reference(u, d, tau, n))
