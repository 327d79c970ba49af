"""Checkpoints: safetensors weights plus a JSON model card, registered by content hash.

A model lives in the store's `models` namespace as

    models/<id>/model.safetensors   the EMA weights of the network, and the objective's
                                    tensors under "objective." (no pickle, ever)
    models/<id>/card.json           process and parameters, data set, network config,
                                    objective, training settings, final figures,
                                    code version, and the sha256 of model.safetensors

with <id> = <process>-<first 16 hex digits of that sha256>. The card is
written after the weights, so a model with a card is complete; registering
the same weights twice is a no-op. `load_model` checks the card against the
process it is asked to serve (name, parameters, image shape) and the weights
against the card's sha256 before building the network, and answers every
problem with a one-line ScalespaceError.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from scalespace import ScalespaceError
from scalespace.denoisers.learned import LearnedDenoiser
from scalespace.denoisers.objectives import OBJECTIVES
from scalespace.denoisers.unet import UNet, UNetConfig
from scalespace.ids import check_id
from scalespace.processes.base import Process
from scalespace.storage.base import ArtifactStore

WEIGHTS = "model.safetensors"
CARD = "card.json"
CARD_FORMAT = 1
#: tensors of the objective (not the network) in model.safetensors, e.g. "objective.scale"
EXTRA_PREFIX = "objective."


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> bytes:
    """safetensors bytes of CPU tensors; `metadata` is stored as one JSON string."""
    meta = {"json": json.dumps(metadata, sort_keys=True)} if metadata is not None else None
    return st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)


def tensors_from_bytes(data: bytes, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of `tensors_to_bytes`; a damaged file is a ScalespaceError naming `what`."""
    try:
        tensors = st_load(data)
        raw = _safetensors_metadata(data)
        meta = json.loads(raw["json"]) if raw and "json" in raw else {}
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError):
        raise ScalespaceError(f"{what} is corrupted or truncated; re-run the job that wrote it") from None
    return tensors, meta


def _safetensors_metadata(data: bytes) -> dict[str, str] | None:
    # The header is an 8-byte little-endian length and a JSON object with "__metadata__".
    n = int.from_bytes(data[:8], "little")
    if len(data) < 8 or n > len(data) - 8:
        raise ValueError("short header")
    return json.loads(data[8 : 8 + n]).get("__metadata__")


def model_id_for(process_name: str, sha256: str) -> str:
    return f"{process_name}-{sha256[:16]}"


def register_model(store: ArtifactStore, weights: dict[str, torch.Tensor], card: dict[str, Any]) -> str:
    """Store `weights` and `card` (without sha256/id, added here) under their content hash; returns the id."""
    data = tensors_to_bytes(weights, {"format": CARD_FORMAT, "architecture": card["network"]["architecture"]})
    sha = hashlib.sha256(data).hexdigest()
    model_id = model_id_for(card["process"]["name"], sha)
    if store.exists("models", model_id, CARD):
        return model_id  # the same weights are registered already
    store.put("models", model_id, WEIGHTS, data)
    full = {
        **card,
        "id": model_id,
        "format": CARD_FORMAT,
        "sha256": sha,
        "bytes": len(data),
        "registered_at": datetime.now(timezone.utc).isoformat(),
    }
    store.put("models", model_id, CARD, json.dumps(full, indent=2, sort_keys=True, allow_nan=False).encode())
    return model_id


def read_card(store: ArtifactStore, model_id: str) -> dict[str, Any]:
    """The model card of `model_id`; unknown ids and unreadable cards are ScalespaceErrors."""
    check_id(model_id, "model id")
    if not store.exists("models", model_id, CARD):
        raise ScalespaceError(
            f"model: unknown model id {model_id!r} in {store.location('models', model_id)}; "
            "list registered models with 'scalespace models' or use model 'oracle'"
        )
    try:
        card = json.loads(store.get("models", model_id, CARD))
        if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
            raise ValueError("format")
        for key in ("process", "data", "network", "objective", "sha256"):
            card[key]  # noqa: B018  (presence check)
    except (ValueError, KeyError, TypeError):
        raise ScalespaceError(
            f"model: the card of {model_id!r} is corrupted or of another format; retrain the model"
        ) from None
    return card


def check_card(card: dict[str, Any], process: Process) -> None:
    """Refuse a card that does not match `process` (name, parameters, image shape)."""
    mid = card.get("id", "?")
    trained = card["process"]["name"]
    if trained != process.name:
        raise ScalespaceError(
            f"model: {mid!r} was trained for process {trained!r}, not {process.name!r}; "
            f"use process {trained!r} or train a model for {process.name!r}"
        )
    shape = list(process.shape)
    if list(card["data"]["shape"]) != shape:
        raise ScalespaceError(
            f"model: {mid!r} was trained on images of shape {tuple(card['data']['shape'])}, not {tuple(shape)}; "
            f"use data {card['data']['name']!r} (data_size {card['data'].get('size')})"
        )
    want = json.loads(json.dumps(process.params.model_dump(mode="json")))
    have = card["process"]["params"]
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            raise ScalespaceError(
                f"model: {mid!r} was trained with process_params.{key}={have.get(key)!r}, this job has "
                f"{want.get(key)!r}; pass the model's process_params (e.g. --param {key}={json.dumps(have.get(key))})"
            )
    if card["objective"] not in OBJECTIVES:
        raise ScalespaceError(f"model: {mid!r} has unknown objective {card['objective']!r}; upgrade scalespace")


def load_model(
    model_id: str, process: Process, store: ArtifactStore, device: torch.device | str = "cpu"
) -> LearnedDenoiser:
    """The registered model `model_id` as a denoiser for `process`, after checking card and weights."""
    card = read_card(store, model_id)
    check_card(card, process)
    data = store.get("models", model_id, WEIGHTS)
    sha = hashlib.sha256(data).hexdigest()
    if sha != card["sha256"]:
        raise ScalespaceError(
            f"model: {WEIGHTS} of {model_id!r} is corrupted or truncated (sha256 {sha[:12]}... != card's "
            f"{card['sha256'][:12]}...); restore it or retrain the model"
        )
    tensors, _ = tensors_from_bytes(data, f"model: {WEIGHTS} of {model_id!r}")
    extras = {k: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    try:
        config = UNetConfig(**card["network"]["config"])
        cin, cout = process.network_channels()
        net = UNet(cin, config, cout)
        net.load_state_dict({k: v for k, v in tensors.items() if k not in extras}, strict=True)
        return LearnedDenoiser(process, net.to(device), card["objective"], name=model_id, digest=sha, extras=extras)
    except (ValueError, TypeError, RuntimeError):
        raise ScalespaceError(
            f"model: the weights of {model_id!r} do not fit its card's network; retrain the model"
        ) from None


def list_models(store: ArtifactStore) -> list[dict[str, Any]]:
    """The cards of every registered model, oldest first; an unreadable card is listed with its error."""
    out = []
    for model_id in store.list("models"):
        try:
            out.append(read_card(store, model_id))
        except ScalespaceError as e:
            out.append({"id": model_id, "error": str(e)})
    return sorted(out, key=lambda c: (c.get("registered_at", ""), c["id"]))
