"""The `evaluate` job: one process on one data set, measured as a scale-space of distributions.

Artifacts: report.json (every check with its figure and tolerance, the
forward trajectory's figures per step, robustness and density figures, the
spec), one PNG per plot, the pictures (scalespace.evaluation.pictures: the
forward scale-space, a reverse trajectory, the reverse checks' samples) and
report.html, a self-contained page with the table of properties, the plots,
the pictures and the spec. The summary (in the manifest) keeps
one `passed` flag per check (does it agree with theory), which a nightly sweep
compares night to night.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from scalespace import ScalespaceError
from scalespace.data import dataset_shape, load_dataset
from scalespace.data.sizes import split_sizes
from scalespace.evaluation import density as dens
from scalespace.evaluation import robustness as rob
from scalespace.evaluation.check import Check, finite_or_none
from scalespace.evaluation.forward import forward_checks
from scalespace.evaluation.forward_trajectory import (
    ForwardTrajectory, GreyHistogram, eval_indices, forward_steps, forward_tree,
)
from scalespace.evaluation.invariances import check_invariances, invariance_steps
from scalespace.evaluation.pictures import REVERSE_SAMPLES as PICTURE_SAMPLES
from scalespace.evaluation.pictures import evaluation_pictures
from scalespace.evaluation.plots import PLOTS, render_plots
from scalespace.evaluation.report import render_html
from scalespace.evaluation.reverse import (
    ReverseRun, check_r1, check_r2, check_r3, check_r4, reverse_steps, run_reverse,
)
from scalespace.jobs.context import JobContext, PhaseSteps
from scalespace.jobs.images import from_npz, to_npz
from scalespace.jobs.shards import Shard, gather, shard_count, plan_shards, shard_range, spec_range, summed_progress
from scalespace.jobs.sample import load_denoiser, process_for
from scalespace.jobs.specs import EvaluateSpec
from scalespace.processes.base import Process
from scalespace.sampling.pipeline import generate
from scalespace.sampling.samplers import check_reverse_mean
from scalespace.sampling.schedule import respace
from scalespace.stats.batch_tree import BatchTree
from scalespace.stats.marginals import OracleMarginal
from scalespace.stats.reference_cache import QualityReference, reference_features

#: the osmosis oracle keeps K + 1 evolved float64 copies of its training set; refuse more than this
OSMOSIS_ORACLE_MAX_BYTES = 4 * 2**30
#: pooled grey-value histogram of vp samples, for the density comparison: (lo, hi, bins)
GREY_HIST = (-4.0, 4.0, 160)


def check_evaluate_spec(spec: EvaluateSpec, process: Process | None = None) -> Process:
    """What can be checked before loading data: the process, its schedule, the oracle's memory
    (`process`: built by the caller)."""
    if process is None:
        process = process_for(spec, dataset_shape(spec.data, spec.data_size))
    if not process.shared_operator:
        raise ScalespaceError("process_params.guidance: the evaluation's oracle needs 'shared' osmosis guidance")
    _oracle_memory(process, split_sizes(spec.data, spec.data_limit)[0])
    check_reverse_mean(spec.reverse_mean, process)
    shard_count(spec)  # shards: none of them empty
    return process


def _oracle_memory(process: Process, n_train: int) -> None:
    need = process.oracle_bytes(n_train)
    if need > OSMOSIS_ORACLE_MAX_BYTES:
        most = OSMOSIS_ORACLE_MAX_BYTES // process.oracle_bytes(1)
        raise ScalespaceError(
            f"data_limit: the {process.name} oracle would hold {need / 2**30:.1f} GiB of evolved training images; "
            f"set data_limit to at most {most}"
        )


def run_evaluate(spec: EvaluateSpec, ctx: JobContext) -> dict[str, Any]:
    process = check_evaluate_spec(spec)
    if spec.shard is not None:
        return _run_shard(spec, ctx, process)
    shards = plan_shards(spec, ctx.job_id)
    merged = _merge_shards(spec, ctx, process, shards) if shards else None
    with ctx.timed("load"):
        train = load_dataset(spec.data, "train", size=spec.data_size, limit=spec.data_limit,
                             on_progress=lambda done, total: ctx.tick("load train", done, total)).images
        heldout = load_dataset(spec.data, "heldout", size=spec.data_size,
                               on_progress=lambda done, total: ctx.tick("load heldout", done, total)).images
    _oracle_memory(process, len(train))
    groups = spec.checks
    checks: list[Check] = []
    report: dict[str, Any] = {
        "job_id": ctx.job_id, "created_at": datetime.now(timezone.utc).isoformat(), "seed": spec.seed,
        "spec": spec.canonical_dump(), "process": process.describe(), "model": spec.model,
        "data": {"name": spec.data, "shape": list(process.shape), "n_train": len(train), "n_heldout": len(heldout)},
        "times": process.times().tolist(),
    }
    indices = eval_indices(process.T, spec.eval_steps)

    traj = None
    if "forward" in groups or "density" in groups:
        # the oracle, the trajectory's batches step by step, its figures, the forward checks
        work = forward_steps(spec.n, len(indices), spec.batch_size) if merged is None else 0
        steps = ctx.phase("forward", 2 + work + int("forward" in groups))
        with ctx.timed("forward_trajectory"):
            if merged is not None:  # the shards' trajectories, merged
                traj = merged.forward
                steps.step()
            else:
                traj = _forward(spec, process, train, indices, groups, 0, spec.n, steps).result()
            report["n_forward"] = traj.count
            report["trajectory"] = traj.rows(process)
            steps.step()
        if "forward" in groups:
            with ctx.timed("forward_checks"):
                checks += forward_checks(process, traj, train[: spec.n_invariance], len(train), train=train,
                                         poll=steps.poll)
        steps.finish()
    if "invariances" in groups:
        u0, inv_indices = train[: spec.n_invariance], eval_indices(process.T, spec.invariance_steps)
        steps = ctx.phase("invariances", invariance_steps(process.shape, len(u0), inv_indices))
        with ctx.timed("invariances"):
            checks += check_invariances(process, u0, inv_indices, spec.seed, on_step=steps.part(steps.total))
        steps.finish()

    denoiser = None
    run = None
    reference = None
    if "reverse" in groups or "robustness" in groups:
        steps = ctx.phase("reference", 2)  # the quality reference's features, the denoiser
        with ctx.timed("reference_features"):
            feats, extractor = reference_features(spec.data, "heldout", spec.data_size, None, spec.quality_extractor,
                                                  ctx.store, ctx.device)
            reference = QualityReference(feats, extractor)
        steps.step()
        with ctx.timed("load_denoiser"):
            denoiser = load_denoiser(spec.model, process, train, ctx.store, ctx.device, spec.oracle_chunk)
        steps.finish()
    if "reverse" in groups:
        # the reverse run step by step, then R1 to R4 and the quality figure
        work = reverse_steps(process, spec.n_reverse, spec.reverse_steps, spec.batch_size) if merged is None else 0
        steps = ctx.phase("reverse", work + 5)
        with ctx.timed("reverse"):
            run = merged.reverse if merged is not None else run_reverse(
                process, denoiser, train.to(ctx.device), spec.n_reverse, spec.seed, spec.reverse_steps,
                device=ctx.device, batch_size=spec.batch_size, reverse_mean=spec.reverse_mean, on_step=steps.part(work))
            for check in (lambda: check_r1(process, train, run, spec.seed), lambda: check_r2(process, denoiser, run, spec.seed, poll=steps.poll),
                          lambda: check_r3(process), lambda: check_r4(process, train, run, spec.seed)):
                checks.append(check())
                steps.step()
        with ctx.timed("quality"):
            report["quality"] = reference(run.samples, seed=spec.seed)
        steps.finish()

    if "robustness" in groups:
        report["robustness"] = _robustness(spec, ctx, process, denoiser, train, heldout, run, reference)

    if "density" in groups and process.grey_density_is_osmosis:
        steps = ctx.phase("density", dens.density_steps(process, indices))
        with ctx.timed("density"):
            report["density"] = dens.compare_osmosis_vp(
                process, train, indices, dens.Grid(8.0, spec.density_cells),
                histograms=traj.grey_counts if traj is not None else None, hist_range=GREY_HIST,
                on_step=steps.part(steps.total),
            )
        steps.finish()

    # the pictures' short reverse run step by step, then drawing them
    walk = reverse_steps(process, PICTURE_SAMPLES, spec.reverse_steps, PICTURE_SAMPLES) if denoiser is not None else 0
    steps = ctx.phase("pictures", walk + 1)
    with ctx.timed("pictures"):  # after every figure: the pictures' own short reverse run changes none of them
        pictures = evaluation_pictures(process, train, denoiser, run.samples if run is not None else None, data=spec.data,
                                       model=spec.model, seed=spec.seed, steps=spec.reverse_steps,
                                       reverse_mean=spec.reverse_mean, device=ctx.device, on_step=steps.part(walk))
    steps.finish()
    report["checks"] = [c.to_dict() for c in checks]
    if shards:
        report["shards"] = ctx.manifest_extra["shards"] = [
            {"job_id": sh.job_id, "forward_ids": _inclusive(shard_range(spec.n, spec.batch_size, sh.index, sh.count)),
             "reverse_ids": _inclusive(shard_range(spec.n_reverse, spec.batch_size, sh.index, sh.count))}
            for sh in shards]
    report["timings"] = {k: round(v, 3) for k, v in ctx.timings.items()}
    report = finite_or_none(report)
    steps = ctx.phase("report", len(PLOTS) + 2)  # each plot, report.json, report.html
    with ctx.timed("report"):
        plots = {**render_plots(report, on_plot=steps.part(len(PLOTS))), **pictures}
        for name, png in plots.items():
            ctx.put(name, png)
        ctx.put_json("report.json", report)
        steps.step()
        ctx.put("report.html", render_html(report, plots).encode())
    steps.finish()
    return summarise(report, checks)


#: a shard's forward trajectory in its mergeable form (its batch tree's nodes), and its reverse run
SHARD_FORWARD = "forward-shard.json"
SHARD_REVERSE = "reverse-shard.npz"


@dataclass
class MergedShards:
    """What the shards drew, put together: the forward trajectory and the reverse checks' run (None: not asked)."""

    forward: ForwardTrajectory | None
    reverse: ReverseRun | None


def _inclusive(ids: tuple[int, int]) -> list[int]:
    return [ids[0], ids[1] - 1]


def _forward(spec: EvaluateSpec, process: Process, train: torch.Tensor, indices: list[int], groups: list[str],
             first_id: int, n: int, steps: PhaseSteps) -> BatchTree[ForwardTrajectory]:
    """The forward trajectory of samples first_id .. first_id + n - 1 (with the oracle's density for `forward`),
    batch by batch in the batch tree (result(): the trajectory; the same for any split into shards).
    `steps`: one step for the oracle, then forward_steps(...) for the batches."""
    density = OracleMarginal(process, train, chunk=spec.oracle_chunk) if "forward" in groups else None
    steps.step()
    grey = GreyHistogram(*GREY_HIST) if process.grey_density_is_osmosis else None
    return forward_tree(process, train, n, spec.seed, indices, density, batch_size=spec.batch_size, grey=grey,
                        first_id=first_id, on_step=steps.part(forward_steps(n, len(indices), spec.batch_size)))


def _run_shard(spec: EvaluateSpec, ctx: JobContext, process: Process) -> dict[str, Any]:
    """A shard job: its slice of the forward trajectory's samples and of the reverse checks' run, merged by the parent."""
    with ctx.timed("load"):
        train = load_dataset(spec.data, "train", size=spec.data_size, limit=spec.data_limit).images
    _oracle_memory(process, len(train))
    groups = spec.checks
    out: dict[str, Any] = {"process": process.describe(), "shard": {"index": spec.shard.index, "count": spec.shard.count}}
    lo, hi = spec_range(spec, spec.n)
    if ("forward" in groups or "density" in groups) and hi > lo:
        indices = eval_indices(process.T, spec.eval_steps)
        work = forward_steps(hi - lo, len(indices), spec.batch_size)
        steps = ctx.phase("forward", work + 1)
        with ctx.timed("forward_trajectory"):
            tree = _forward(spec, process, train, indices, groups, lo, hi - lo, steps)
        ctx.put_json(SHARD_FORWARD, tree.to_dict(ForwardTrajectory.to_dict))
        out["forward_ids"] = [lo, hi - 1]
        steps.finish()
    lo, hi = spec_range(spec, spec.n_reverse)
    if "reverse" in groups and hi > lo:
        denoiser = load_denoiser(spec.model, process, train, ctx.store, ctx.device, spec.oracle_chunk)
        work = reverse_steps(process, hi - lo, spec.reverse_steps, spec.batch_size)
        steps = ctx.phase("reverse", work)
        with ctx.timed("reverse"):
            run = run_reverse(process, denoiser, train.to(ctx.device), hi - lo, spec.seed, spec.reverse_steps,
                              device=ctx.device, batch_size=spec.batch_size, reverse_mean=spec.reverse_mean,
                              on_step=steps.part(work), first_id=lo)
        ctx.put(SHARD_REVERSE, to_npz(samples=run.samples.numpy(), prior=run.prior.numpy()))
        out["reverse_ids"] = [lo, hi - 1]
        steps.finish()
    return out


def _merge_shards(spec: EvaluateSpec, ctx: JobContext, process: Process, shards: list[Shard]) -> MergedShards:
    """Every shard's results (embedded: the shards run here first), merged in order."""
    manifests = gather(ctx, shards, summed_progress(ctx, "", [0] * len(shards), 0))
    tree: BatchTree[ForwardTrajectory] = BatchTree()
    samples, priors = [], []
    with ctx.timed("merge"):
        for shard, manifest in zip(shards, manifests):
            names = {a.get("name") for a in manifest.get("artifacts") or []}
            if SHARD_FORWARD in names:
                part = json.loads(ctx.store.read_artifact(shard.job_id, SHARD_FORWARD, manifest))
                tree.update(BatchTree.from_dict(part, ForwardTrajectory.from_dict))
            if SHARD_REVERSE in names:
                arrays = from_npz(ctx.store.read_artifact(shard.job_id, SHARD_REVERSE, manifest))
                samples.append(torch.from_numpy(arrays["samples"]))
                priors.append(torch.from_numpy(arrays["prior"]))
    forward, reverse = tree.result(), None
    if "reverse" in spec.checks:
        reverse = ReverseRun(torch.cat(samples), torch.cat(priors), respace(process.T, spec.reverse_steps),
                             process.default_sampler, spec.reverse_mean)
        if len(reverse.samples) != spec.n_reverse:
            raise ScalespaceError(f"shards: the shards hold {len(reverse.samples)} reverse samples, not "
                                  f"n_reverse = {spec.n_reverse}; retry the job")
    if ("forward" in spec.checks or "density" in spec.checks) and (forward is None or forward.count != spec.n):
        raise ScalespaceError(f"shards: the shards hold {0 if forward is None else forward.count} forward samples, not "
                              f"n = {spec.n}; retry the job")
    return MergedShards(forward, reverse)


def _robustness(spec, ctx, process, denoiser, train, heldout, run, reference) -> dict[str, Any]:
    opts = spec.robustness
    out: dict[str, Any] = {"extractor": reference.extractor.name, "steps_of_seed_runs": min(opts.steps or process.T, process.T)}
    samplers = rob.samplers_for(process)
    # every reverse step of every run, one step per seed's figures and per steps-curve figure, the memorisation
    sens = rob.sensitivity_steps(process, opts.steps)
    seed_run = rob.sampling_steps(process, opts.n, opts.steps, spec.batch_size)
    curve = rob.steps_curve_steps(process, opts.n, list(opts.step_counts))
    extra = rob.sampling_steps(process, opts.n, opts.steps) if run is None else 0
    steps = ctx.phase("robustness", len(samplers) * sens + len(opts.seeds) * (seed_run + 1) + curve + extra + 1)
    with ctx.timed("robustness_sensitivity"):
        out["sensitivity"] = [
            rob.sensitivity(process, denoiser, train.to(ctx.device), opts.n, spec.seed, opts.steps, s, tuple(opts.eps), ctx.device,
                            reverse_mean=spec.reverse_mean, on_step=steps.part(sens))
            for s in samplers
        ]
    with ctx.timed("robustness_seeds"):
        def draw(seed: int) -> torch.Tensor:
            return generate(process, denoiser, opts.n, seed, steps=opts.steps, train=train.to(ctx.device),
                            device=ctx.device, batch_size=spec.batch_size, reverse_mean=spec.reverse_mean,
                            on_step=steps.part(seed_run))

        out["seed_spread"] = rob.seed_spread(draw, list(opts.seeds), reference, n_boot=opts.n_boot,
                                             on_seed=lambda done, total: steps.step())
    with ctx.timed("robustness_steps"):
        out["steps"] = rob.steps_curve(process, denoiser, train.to(ctx.device), opts.n, spec.seed, list(opts.step_counts),
                                       reference, ctx.device, reverse_mean=spec.reverse_mean, on_step=steps.part(curve))
    with ctx.timed("robustness_memorisation"):
        samples = run.samples if run is not None else generate(process, denoiser, opts.n, spec.seed, steps=opts.steps,
                                                                train=train.to(ctx.device), device=ctx.device,
                                                                reverse_mean=spec.reverse_mean, on_step=steps.part(extra))
        out["memorisation"] = rob.memorisation(samples, train, heldout)
    steps.finish()
    return out


def summarise(report: dict[str, Any], checks: list[Check]) -> dict[str, Any]:
    """The manifest's summary: one entry per check, whether all asserted checks agree, headline figures.

    `checks_agreeing` of `checks_asserted` counts evidence only: identity checks (true by construction) are left
    out of both, as in the report's banner; `passed` still needs every check, identities included, to agree."""
    asserted = [c for c in checks if c.counts]
    out: dict[str, Any] = {
        "process": report["process"]["name"],
        "data": report["data"]["name"],
        "passed": all(c.agrees for c in checks),
        "checks_agreeing": sum(c.agrees for c in asserted),
        "checks_asserted": len(asserted),
        "checks": {c.key: {"passed": c.agrees, "holds": c.holds, "figure": c.figure, "kind": c.kind}
                   for c in checks if c.applies},
    }
    q = report.get("quality")
    if q:
        out["quality"] = {"fd": q["fid"], "n_samples": q["n_samples"], "extractor": q["extractor"]}
    r = report.get("robustness") or {}
    if r.get("memorisation"):
        out["memorisation_ratio"] = r["memorisation"]["ratio"]
    if report.get("density"):
        out["density_max_l1"] = report["density"]["max_l1"]
    return finite_or_none(out)


def markdown_table(report: dict[str, Any]) -> str:
    """The table of properties as markdown (for notes and the CLI)."""
    lines = ["| property | kind | observed | theory | agrees | figure | tolerance |", "|---|---|---|---|---|---|---|"]
    for c in report["checks"]:
        obs = "n/a" if not c["applies"] else {True: "holds", False: "does not hold", None: "-"}[c["holds"]]
        exp = {"holds": "holds", "fails": "fails", "report": "reported", "n/a": "-"}[c["expected"]]
        agree = "yes" if c["agrees"] else "NO"
        fig = "-" if c["figure"] is None else f"{c['figure'] + 0.0:.3g}"  # + 0.0: no "-0"
        tol = "-" if c["tolerance"] is None else f"{c['tolerance']:.3g}"
        name = c["name"].replace("|", "\\|")  # a bare | would end the cell
        lines.append(f"| {name} | {c.get('kind', '-')} | {obs} | {exp} | {agree if exp in ('holds', 'fails') else '-'} | {fig} | {tol} |")
    return "\n".join(lines)


def load_report(store, job_id: str) -> dict[str, Any]:
    """The report.json of a finished evaluate job."""
    return json.loads(store.read_artifact(job_id, "report.json"))


__all__ = ["check_evaluate_spec", "load_report", "markdown_table", "run_evaluate", "summarise"]
