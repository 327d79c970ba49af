"""The U-Net's shapes and the objectives' algebra (a perfect network output gives the exact prediction)."""

from __future__ import annotations

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.denoisers.objectives import OneStepObjective, SpectralObjective, objective_for
from scalespace.denoisers.unet import PRESETS, UNet, UNetConfig, count_parameters
from scalespace.processes import make_process


@pytest.mark.parametrize("size,attention", [(8, False), (7, True), (12, True)])
def test_unet_keeps_shape_at_any_size(size, attention):
    cfg = UNetConfig(channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, attention=attention, heads=2, groups=4)
    net = UNet(2, cfg)
    torch.nn.init.normal_(net.conv_out.weight)  # the output layer starts at zero; make it show
    x = torch.randn(3, 2, size, size)
    y = net(x, torch.rand(3))
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().sum() > 0


def test_unet_time_conditioning_matters():
    net = UNet(1, UNetConfig(channels=8, channel_mults=(1,), groups=2))
    torch.nn.init.normal_(net.conv_out.weight)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.allclose(net(x, torch.tensor([0.1, 0.1])), net(x, torch.tensor([0.9, 0.9])))


def test_untrained_network_outputs_zero():
    net = UNet(1, PRESETS["tiny"].network)
    assert torch.equal(net(torch.randn(2, 1, 8, 8), torch.rand(2)), torch.zeros(2, 1, 8, 8))


def test_presets_grow_and_state_their_time():
    sizes = [count_parameters(UNet(1, PRESETS[k].network)) for k in ("tiny", "small", "base")]
    assert sizes[0] < 250_000 < sizes[1] < sizes[2] and sizes[2] > 2_000_000
    assert all("minute" in PRESETS[k].time for k in PRESETS)


@pytest.mark.parametrize("name,objective", [("vp", "eps"), ("vp", "v"), ("ve", "v"), ("ve", "eps"), ("blurring", "v")])
def test_spectral_objective_inverts_its_target(name, objective):
    p = make_process(name, (1, 8, 8), {"T": 50})
    obj = SpectralObjective(p, objective)
    g = torch.Generator().manual_seed(0)
    u0 = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(6, 1, 8, 8, generator=g)
    i = torch.tensor([1, 5, 20, 35, 49, 50])
    x, target = obj.training_pair(u0, i, eps)
    u_t = torch.stack([p.sample_marginal(int(k), u0[b : b + 1].double(), eps[b : b + 1].double())[0] for b, k in enumerate(i)])
    assert torch.allclose(obj.net_input(u_t.float(), i), x, atol=1e-4)
    u0_hat = obj.predict_u0(target, u_t.float(), i)
    # eps-prediction divides by alpha_t (0.006 for blurring at t = 1): only compare where it is tame
    tol = 1e-3 if objective == "v" else 2e-2
    assert torch.allclose(u0_hat, u0, atol=tol), float((u0_hat - u0).abs().max())


def test_v_objective_bounds_the_error_gain_for_blurring():
    """An error e in the network output moves u0_hat by at most |e| (eps-prediction: up to sigma / alpha)."""
    p = make_process("blurring", (1, 8, 8), {"T": 50})
    g = torch.Generator().manual_seed(1)
    u_t, err = torch.randn(4, 1, 8, 8, generator=g), 1e-3 * torch.randn(4, 1, 8, 8, generator=g)
    i = torch.full((4,), 50)
    out = torch.randn(4, 1, 8, 8, generator=g)
    gain = {}
    for objective in ("v", "eps"):
        obj = SpectralObjective(p, objective)
        gain[objective] = float((obj.predict_u0(out + err, u_t, i) - obj.predict_u0(out, u_t, i)).norm() / err.norm())
    assert gain["v"] <= 1.0 + 1e-4 and gain["eps"] > 100


@pytest.mark.parametrize("name", ["heat", "osmosis"])
def test_one_step_target_is_the_scaled_previous_mean(name):
    p = make_process(name, (1, 8, 8), {"K": 10})
    scale = torch.linspace(0.5, 2.0, 11)
    obj = OneStepObjective(p, scale)
    u0 = torch.rand(3, 1, 8, 8) * 2 - 1
    eps = torch.randn(3, 1, 8, 8)
    i = torch.tensor([1, 4, 10])
    mk = torch.cat([p.marginal_mean(int(k), u0[b : b + 1]) for b, k in enumerate(i)])
    mp = torch.cat([p.marginal_mean(int(k) - 1, u0[b : b + 1]) for b, k in enumerate(i)])
    x, target = obj.training_pair(mk, mp, eps, i)
    u_k = mk + 0.01 * eps
    assert torch.allclose(x[:, :1], u_k)
    assert torch.allclose(target * scale[i].reshape(-1, 1, 1, 1), mp - u_k, atol=1e-6)
    # a network output whose head is the target recovers the previous mean exactly
    out = torch.cat([target, torch.zeros_like(target)], dim=1) if name == "osmosis" else target
    assert torch.allclose(obj.predict_prev(out, u_k, i), mp, atol=1e-6)


def test_osmosis_head_adds_the_guidance_weighted_part():
    """The osmosis network outputs (r_u, r_w); the residual is r_u + g r_w, so either part can carry the target."""
    p = make_process("osmosis", (1, 8, 8), {"K": 10})
    scale = torch.linspace(0.5, 2.0, 11)
    obj = OneStepObjective(p, scale)
    g = obj.g
    assert g.shape == (1, 1, 8, 8) and (g > 0).all() and torch.allclose(g.mean(), torch.tensor(1.0), atol=1e-6)
    assert g.std() > 0.05  # a real texture: the two parts are not interchangeable by a constant
    gen = torch.Generator().manual_seed(3)
    r_u, r_w = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    assert torch.allclose(obj.head(torch.cat([r_u, r_w], dim=1)), r_u + g * r_w, atol=1e-6)
    target = torch.randn(2, 1, 8, 8, generator=gen)
    u_k, i = torch.randn(2, 1, 8, 8, generator=gen), torch.tensor([2, 9])
    via_u = obj.predict_prev(torch.cat([target, torch.zeros_like(target)], dim=1), u_k, i)
    via_w = obj.predict_prev(torch.cat([torch.zeros_like(target), target / g], dim=1), u_k, i)
    assert torch.allclose(via_u, via_w, atol=1e-5)
    assert torch.allclose(via_u, u_k + scale[i].reshape(-1, 1, 1, 1) * target, atol=1e-5)
    # the input carries u, w = (u + c) / g - c and ln g: three channels in, two out
    x = obj.net_input(u_k, i)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x[:, 2:], torch.log(g).expand(2, -1, -1, -1))
    assert torch.allclose(x[:, 1:2], (u_k + obj.offset) / g - obj.offset, atol=1e-6)


def test_osmosis_guidance_relative_input_flattens_the_steady_state():
    """w = (u + c) / g - c is the flat mean image at osmosis's steady state, whatever the guidance texture."""
    p = make_process("osmosis", (1, 8, 8), {"K": 10})
    obj = OneStepObjective(p)
    u0 = torch.rand(2, 1, 8, 8) * 2 - 1
    steady = p.steady_state(u0.double()).float()
    w = obj.net_input(steady, torch.tensor([10, 10]))[:, 1:2]
    assert torch.allclose(w, u0.mean(dim=(1, 2, 3), keepdim=True).expand_as(w), atol=1e-5)
    assert steady.std() > 0.2  # the pixels themselves are a texture


def test_objective_choice_is_checked():
    assert objective_for(make_process("blurring", (1, 8, 8)), "auto") == "v"
    assert objective_for(make_process("osmosis", (1, 8, 8)), None) == "one_step"
    with pytest.raises(ScalespaceError, match="'one_step' is for heat and osmosis"):
        objective_for(make_process("vp", (1, 8, 8)), "one_step")
    with pytest.raises(ScalespaceError, match="trained with 'one_step'"):
        objective_for(make_process("heat", (1, 8, 8)), "eps")
