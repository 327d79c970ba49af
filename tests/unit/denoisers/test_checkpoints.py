"""Checkpoints: bit-exact round trip, and one-line errors for every way loading can go wrong."""

from __future__ import annotations

import json

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.denoisers.checkpoints import CARD, WEIGHTS, list_models, load_model, register_model
from scalespace.denoisers.training import TrainConfig, Trainer
from scalespace.denoisers.unet import UNetConfig
from scalespace.data import load_dataset
from scalespace.processes import make_process

TEST_NETWORK = {"channels": 8, "channel_mults": [1], "groups": 2}


def _trained(process_name: str, params: dict) -> Trainer:
    p = make_process(process_name, (1, 8, 8), params)
    x = load_dataset("digits", limit=32).images
    obj = {"vp": "eps", "blurring": "v", "heat": "one_step", "osmosis": "one_step"}[process_name]
    tr = Trainer(p, x, UNetConfig(**TEST_NETWORK), obj, TrainConfig(steps=3, batch_size=8, lr=1e-2, ema_decay=0.5))
    for _ in range(3):
        tr.train_step()
    return tr


def _card(tr: Trainer) -> dict:
    p = tr.process
    return {
        "process": {"name": p.name, "params": p.params.model_dump(mode="json"), "T": p.T},
        "data": {"name": "digits", "size": None, "limit": 32, "shape": list(p.shape), "n_train": 32},
        "network": {"architecture": "unet", "preset": "tiny", "config": tr.network_config.model_dump(mode="json"),
                    "parameters": 0},
        "objective": tr.objective,
        "training": {"steps": tr.step},
        "figures": {},
        "code_version": "test",
    }


@pytest.fixture(scope="module")
def vp_trainer() -> Trainer:
    return _trained("vp", {"T": 30})


@pytest.fixture
def vp_model(store, vp_trainer) -> str:
    return register_model(store, vp_trainer.model_tensors(), _card(vp_trainer))


@pytest.mark.parametrize("name,params", [("vp", {"T": 30}), ("blurring", {"T": 30}), ("heat", {"K": 5}), ("osmosis", {"K": 4})])
def test_round_trip_is_bit_exact(store, name, params):
    tr = _trained(name, params)
    model_id = register_model(store, tr.model_tensors(), _card(tr))
    assert model_id.startswith(f"{name}-")
    loaded = load_model(model_id, make_process(name, (1, 8, 8), params), store, "cpu")
    for k, v in tr.ema.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k
    direct = tr.denoiser()
    u = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    t = tr.process.T
    assert torch.equal(loaded.predict_u0(u, t), direct.predict_u0(u, t))
    assert torch.equal(loaded.reverse_mean(tr.process, u, t, t - 1), direct.reverse_mean(tr.process, u, t, t - 1))
    assert loaded.name == model_id and len(loaded.digest()) == 64


def test_registering_twice_gives_one_model(store, vp_trainer, vp_model):
    again = register_model(store, vp_trainer.model_tensors(), _card(vp_trainer))
    assert again == vp_model
    cards = list_models(store)
    assert [c["id"] for c in cards] == [vp_model]
    assert cards[0]["sha256"] and cards[0]["process"]["name"] == "vp"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_corrupted_weights_are_refused(store, vp_model):
    path = store._dir("models", vp_model) / WEIGHTS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ScalespaceError, match="corrupted or truncated") as e:
        load_model(vp_model, make_process("vp", (1, 8, 8), {"T": 30}), store)
    assert vp_model in _one_line(e)


def test_truncated_weights_are_refused(store, vp_model):
    path = store._dir("models", vp_model) / WEIGHTS
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ScalespaceError, match="corrupted or truncated") as e:
        load_model(vp_model, make_process("vp", (1, 8, 8), {"T": 30}), store)
    _one_line(e)


def test_corrupted_card_is_refused(store, vp_model):
    (store._dir("models", vp_model) / CARD).write_text('{"format": 1, "process": ')
    with pytest.raises(ScalespaceError, match="card .* is corrupted") as e:
        load_model(vp_model, make_process("vp", (1, 8, 8), {"T": 30}), store)
    _one_line(e)
    assert "error" in list_models(store)[0]


def test_card_with_forged_sha_is_refused(store, vp_model):
    card_path = store._dir("models", vp_model) / CARD
    card = json.loads(card_path.read_text())
    card["sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(ScalespaceError, match="sha256"):
        load_model(vp_model, make_process("vp", (1, 8, 8), {"T": 30}), store)


def test_vp_model_used_for_blurring_is_refused(store, vp_model):
    with pytest.raises(ScalespaceError, match="trained for process 'vp', not 'blurring'") as e:
        load_model(vp_model, make_process("blurring", (1, 8, 8), {"T": 30}), store)
    _one_line(e)


def test_other_process_params_are_refused(store, vp_model):
    with pytest.raises(ScalespaceError, match=r"process_params.T=30, this job has 1000.*--param T=30"):
        load_model(vp_model, make_process("vp", (1, 8, 8)), store)


def test_other_image_shape_is_refused(store, vp_model):
    with pytest.raises(ScalespaceError, match=r"shape \(1, 8, 8\), not \(1, 16, 16\)"):
        load_model(vp_model, make_process("vp", (1, 16, 16), {"T": 30}), store)


def test_unknown_and_invalid_ids_are_refused(store, vp_model):
    with pytest.raises(ScalespaceError, match="unknown model id 'vp-0000'") as e:
        load_model("vp-0000", make_process("vp", (1, 8, 8), {"T": 30}), store)
    assert "scalespace models" in _one_line(e)
    with pytest.raises(ScalespaceError, match="invalid model id"):
        load_model("../etc", make_process("vp", (1, 8, 8), {"T": 30}), store)


def test_no_pickle_in_checkpoints(store, vp_model):
    # safetensors files start with a little-endian header length and a JSON header, never a pickle opcode
    data = (store._dir("models", vp_model) / WEIGHTS).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    assert "__metadata__" in header and data[:2] != b"\x80\x04"
