"""The `train` job: fit a U-Net denoiser, evaluate it, register it as a model.

Progress goes out as ("train", step, steps, loss, steps_per_second) and, for
each evaluation, ("evaluate", reverse step, reverse steps + 1) over the
sampling of a small sample, whose last report carries the Fréchet distance
against the held-out split (`fd`) and the training step (`train_step`); every
training step checks for cancellation. Every `checkpoint_every` steps the
whole training state is written to the job's own artifact `checkpoint.safetensors`; run_job keeps a
failed train job's artifacts (train is resumable: scalespace.jobs.kinds), so running the
same job id again resumes from the last checkpoint and, since every step's
batch depends only on (seed, step), ends with the weights an uninterrupted
run would have. At the end the EMA weights are registered in the store's
`models` namespace (scalespace.denoisers.checkpoints) and the model id goes into
the manifest.
"""

from __future__ import annotations

import io
import time
from typing import Any

import torch
from pydantic import ValidationError

from scalespace import ScalespaceError
from scalespace.data import dataset_shape, load_dataset
from scalespace.denoisers.checkpoints import register_model, tensors_from_bytes, tensors_to_bytes
from scalespace.denoisers.objectives import objective_for
from scalespace.denoisers.training import TrainConfig, Trainer
from scalespace.denoisers.unet import PRESETS, UNetConfig, count_parameters
from scalespace.jobs.context import JobContext
from scalespace.jobs.images import grid_png
from scalespace.jobs.manifest import code_version
from scalespace.jobs.sample import process_for
from scalespace.jobs.specs import TrainSpec
from scalespace.processes import Process
from scalespace.sampling.pipeline import generate
from scalespace.sampling.samplers import check_reverse_mean
from scalespace.sampling.schedule import check_steps
from scalespace.stats import available_extractors, fid

CHECKPOINT = "checkpoint.safetensors"


def network_config(spec: TrainSpec) -> UNetConfig:
    """The preset's U-Net with the spec's overrides."""
    try:
        return UNetConfig(**{**PRESETS[spec.preset].network.model_dump(), **spec.network})
    except ValidationError as e:
        err = e.errors()[0]
        raise ScalespaceError(f"network.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def train_config(spec: TrainSpec) -> TrainConfig:
    p = PRESETS[spec.preset]
    steps = spec.steps or p.steps
    return TrainConfig(
        steps=steps,
        batch_size=spec.batch_size or p.batch_size,
        lr=spec.lr or p.lr,
        ema_decay=p.ema_decay if spec.ema_decay is None else spec.ema_decay,
        seed=spec.seed,
        warmup_steps=min(spec.warmup_steps, steps // 2),
        grad_clip=spec.grad_clip,
        amp=spec.amp,
        log_every=spec.log_every,
    )


def eval_steps(spec: TrainSpec, process: Process) -> int:
    """Reverse steps of an evaluation sample: as given, else 100 (or T when smaller, or for one-step models)."""
    steps = spec.eval_steps or (process.T if process.prior_needs_data else min(100, process.T))
    check_steps(process.T, steps)
    return steps


def check_train_spec(spec: TrainSpec, process: Process | None = None) -> tuple[Process, str]:
    """Everything that can be checked before loading data: process, objective, network, eval steps, extractor
    (`process`: built by the caller)."""
    if process is None:
        process = process_for(spec, dataset_shape(spec.data, spec.data_size))
    if not process.shared_operator:
        raise ScalespaceError("process_params.guidance: training osmosis needs 'shared' guidance (one for all images)")
    objective = objective_for(process, spec.objective)
    network_config(spec)
    try:
        eval_steps(spec, process)
    except ScalespaceError as e:
        raise ScalespaceError(f"eval_steps: {e}") from None
    if spec.eval_extractor not in available_extractors():
        raise ScalespaceError(
            f"eval_extractor: unknown {spec.eval_extractor!r}; choose one of {', '.join(available_extractors())}"
        )
    check_reverse_mean(spec.reverse_mean, process)
    return process, objective


def evaluate(
    spec: TrainSpec, trainer: Trainer, heldout: torch.Tensor, ctx: JobContext
) -> tuple[dict[str, Any], torch.Tensor]:
    """Fréchet distance of `eval_samples` EMA samples against the held-out split: (figures, samples).

    Progress: phase "evaluate", every reverse step of the sample, then the Fréchet distance (with figures
    `fd` and `train_step`)."""
    process = trainer.process
    batch = min(spec.eval_samples, 256)
    work = -(-spec.eval_samples // batch) * eval_steps(spec, process)
    steps = ctx.phase("evaluate", work + 1)
    samples = generate(
        process, trainer.denoiser(), spec.eval_samples, spec.seed,
        batch_size=batch, steps=eval_steps(spec, process),
        train=trainer.images, device=ctx.device, reverse_mean=spec.reverse_mean, on_step=steps.part(work),
    )
    r = fid(samples, heldout, spec.eval_extractor, device=ctx.device)
    row = {"step": trainer.step, "fd": r["fid"], "extractor": r["extractor"], "n_samples": r["n_samples"],
           "n_reference": r["n_reference"], "sampler_steps": eval_steps(spec, process)}
    steps.finish(fd=row["fd"], train_step=trainer.step)
    return row, samples


def loss_curve_png(points: list[tuple[int, float]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (MSE)")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _save_state(ctx: JobContext, spec: TrainSpec, trainer: Trainer, evals: list, elapsed: float) -> None:
    tensors, meta = trainer.state()
    state = {"spec_hash": spec.spec_hash(), "trainer": meta, "evals": evals, "elapsed_s": elapsed}
    ctx.put(CHECKPOINT, tensors_to_bytes(tensors, state))


def _resume(ctx: JobContext, spec: TrainSpec, trainer: Trainer) -> tuple[list, float]:
    """Load the job's last checkpoint, if any: (evaluations so far, training seconds so far)."""
    data = ctx.read_latest(CHECKPOINT)
    if data is None:
        return [], 0.0
    tensors, state = tensors_from_bytes(data, f"{CHECKPOINT} of job {ctx.job_id!r}")
    if state.get("spec_hash") != spec.spec_hash():
        raise ScalespaceError(f"job id {ctx.job_id!r} holds the training state of another spec; use a new job id")
    trainer.load_state(tensors, state["trainer"])
    return list(state["evals"]), float(state["elapsed_s"])


def run_train(spec: TrainSpec, ctx: JobContext) -> dict[str, Any]:
    process, objective = check_train_spec(spec)
    network, cfg = network_config(spec), train_config(spec)
    with ctx.timed("load"):
        train = load_dataset(spec.data, "train", size=spec.data_size, limit=spec.data_limit,
                             on_progress=lambda done, total: ctx.tick("load train", done, total)).images
        heldout = load_dataset(spec.data, "heldout", size=spec.data_size,
                               on_progress=lambda done, total: ctx.tick("load heldout", done, total)).images
        trainer = Trainer(process, train, network, objective, cfg, ctx.device)
        evals, elapsed = _resume(ctx, spec, trainer)
    resumed_from = trainer.step
    ctx.manifest_extra["resumed_from_step"] = resumed_from
    t0, step0 = time.perf_counter(), trainer.step
    while trainer.step < cfg.steps:
        trainer.train_step()
        s = trainer.step
        rate = (s - step0) / max(time.perf_counter() - t0, 1e-9)
        if spec.eval_every and s % spec.eval_every == 0 and s < cfg.steps:
            row, _ = evaluate(spec, trainer, heldout, ctx)
            evals.append(row)
        if s % spec.checkpoint_every == 0 and s < cfg.steps:
            _save_state(ctx, spec, trainer, evals, elapsed + time.perf_counter() - t0)
        if s % cfg.log_every == 0 or s == cfg.steps:  # reports also check for cancellation
            ctx.report("train", s, cfg.steps, loss=trainer.curve.last(), steps_per_second=rate)
        else:  # a step can be long (a large batch, a large network): a cancel waits for one step at most
            ctx.check_stop()
    train_s = elapsed + time.perf_counter() - t0
    ctx.timings["train"] = time.perf_counter() - t0
    with ctx.timed("evaluate"):
        final, samples = evaluate(spec, trainer, heldout, ctx)
    evals.append(final)
    _save_state(ctx, spec, trainer, evals, train_s)
    title = f"{process.name} on {spec.data} ({spec.preset}, {objective})"
    ctx.put_json("loss_curve.json", {"every": cfg.log_every, "points": trainer.curve.points})
    ctx.put("loss_curve.png", loss_curve_png(trainer.curve.points, title))
    ctx.put("samples.png", grid_png(samples))
    ctx.put_json("evaluations.json", evals)
    card = {
        "process": {"name": process.name, "params": process.params.model_dump(mode="json"), "T": process.T},
        "data": {"name": spec.data, "size": spec.data_size, "limit": spec.data_limit,
                 "shape": list(process.shape), "n_train": int(len(train))},
        "network": {"architecture": "unet", "preset": spec.preset, "config": network.model_dump(mode="json"),
                    "parameters": count_parameters(trainer.ema)},
        "objective": objective,
        "training": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
                     "ema_decay": cfg.ema_decay, "grad_clip": cfg.grad_clip, "amp": trainer.amp, "seed": cfg.seed,
                     "device": str(ctx.device), "time_s": train_s, "job_id": ctx.job_id, "spec_hash": spec.spec_hash()},
        "figures": {"final_loss": trainer.curve.last(), "evaluation": final},
        "code_version": code_version(),
    }
    ctx.check_owner()  # models are stored by content hash, outside the attempt's folder
    model_id = register_model(ctx.store, trainer.model_tensors(), card)
    ctx.manifest_extra["model"] = {"id": model_id, "location": ctx.store.location("models", model_id)}
    return {
        "model_id": model_id,
        "process": process.describe(),
        "objective": objective,
        "steps": cfg.steps,
        "resumed_from_step": resumed_from,
        "train_s": train_s,
        "final_loss": trainer.curve.last(),
        "evaluation": final,
        "parameters": card["network"]["parameters"],
    }
