"""The `sweep` job: run a grid of child jobs and report them against the previous sweep.

Children have fixed ids, <sweep-id>.c000, .c001, ... in grid order, so both
modes lay out the same results:
- embedded (`scalespace run sweep.yaml`): `run_sweep` runs each child in this
  process, one after another, through the same `run_job` (`ctx.run_child`);
- distributed: the scheduler submits the children as jobs of their own, and
  when the last one has ended it runs this sweep job, which finds every child
  already done (a manifest) or given up (failure.json) and only aggregates.
A child that fails does not stop the sweep; it shows in the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from scalespace import ScalespaceError
from scalespace.jobs.context import JobContext, JobStopped
from scalespace.jobs.specs import GRID_FIELDS, SweepSpec, parse_spec
from scalespace.jobs.sweep_report import build_report, render_html
from scalespace.storage import StoreUnavailable
from scalespace.storage.base import ArtifactStore

FAILURE = "failure.json"
REPORT_JSON = "sweep-report.json"
REPORT_HTML = "sweep-report.html"
HISTORY = "history.json"


@dataclass(frozen=True)
class SweepChild:
    """One cell of the grid: its key "process/data/model" and its job spec (a dict)."""

    key: str
    spec: dict[str, Any]


def plan_sweep(spec: SweepSpec) -> list[SweepChild]:
    """The children in grid order (processes, then data sets, then models), each a validated spec."""
    kind = spec.template["kind"]
    models = spec.models if kind != "train" else ["-"]
    out: list[SweepChild] = []
    for process in spec.processes:
        for data in spec.data:
            for model in models:
                child = {**spec.template, "process": process, "data": data}
                if kind != "train":
                    child["model"] = model
                try:
                    parse_spec(child)
                except ScalespaceError as e:
                    field, _, reason = str(e).partition(": ")
                    axis = GRID_FIELDS.get(field, f"template.{field}")
                    raise ScalespaceError(f"{axis}: {reason or e}") from None
                out.append(SweepChild(f"{process}/{data}/{model}", child))
    return out


def child_job_id(sweep_id: str, k: int) -> str:
    return f"{sweep_id}.c{k:03d}"


def record_failure(store: ArtifactStore, job_id: str, state: str, error: str) -> None:
    """Mark a child that ended without results, so the aggregation does not run it again."""
    store.put_json("jobs", job_id, FAILURE, {"job_id": job_id, "state": state, "error": error})


def _outcome(store: ArtifactStore, job_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    manifest = store.manifest(job_id)
    if manifest is not None:
        return manifest, None
    if store.exists("jobs", job_id, FAILURE):
        return None, store.get_json("jobs", job_id, FAILURE)
    return None, None


def run_sweep(spec: SweepSpec, ctx: JobContext) -> dict[str, Any]:
    children = plan_sweep(spec)
    results: list[dict[str, Any]] = []
    for k, child in enumerate(children):
        ctx.report("sweep", k, len(children))
        cid = child_job_id(ctx.job_id, k)
        manifest, failure = _outcome(ctx.store, cid)
        if manifest is None and failure is None:
            try:
                manifest = ctx.run_child(child.spec, cid)
            except (JobStopped, StoreUnavailable):
                raise  # the sweep itself stops, or retries later
            except Exception as e:  # noqa: BLE001 - a failed child is a finding, not the end of the sweep
                failure = {"state": "failed", "error": str(e).splitlines()[0] if str(e) else type(e).__name__}
        results.append({
            "key": child.key, "job_id": cid, "kind": child.spec["kind"],
            "state": "succeeded" if manifest is not None else failure.get("state", "failed"),
            "error": None if manifest is not None else failure.get("error"),
            "summary": manifest.get("summary") if manifest is not None else None,
        })
    ctx.report("sweep", len(children), len(children))
    previous_id, previous = previous_report(ctx.store, spec.name, exclude=ctx.job_id)
    report = build_report(spec, ctx.job_id, results, previous_id, previous)
    ctx.put_json(REPORT_JSON, report)
    ctx.put(REPORT_HTML, render_html(report).encode())
    _remember(ctx.store, spec.name, ctx.job_id)
    ctx.manifest_extra["sweep"] = {"name": spec.name, "children": [r["job_id"] for r in results]}
    return {
        "name": spec.name,
        "children": len(results),
        "succeeded": sum(r["state"] == "succeeded" for r in results),
        "failed": sum(r["state"] != "succeeded" for r in results),
        "regressions": len(report["regressions"]),
        "compared_with": previous_id,
    }


def _history_id(name: str) -> str:
    return f"sweep.{name}"


def _history(store: ArtifactStore, name: str) -> list[dict[str, Any]]:
    try:
        return list(store.get_json("cache", _history_id(name), HISTORY).get("runs", []))
    except StoreUnavailable:
        raise  # an outage is not "no history": never overwrite it on a guess
    except (ScalespaceError, json.JSONDecodeError, AttributeError):
        return []


def previous_report(store: ArtifactStore, name: str, exclude: str | None = None) -> tuple[str | None, dict | None]:
    """The report of the latest committed sweep of this name (one with a manifest), if any."""
    runs = _history(store, name)
    for entry in reversed(runs):
        job_id = entry.get("job_id")
        if job_id and job_id != exclude and store.manifest(job_id) is not None:
            try:
                return job_id, json.loads(store.read_artifact(job_id, REPORT_JSON))
            except StoreUnavailable:
                raise
            except (ScalespaceError, json.JSONDecodeError):
                continue
    return None, None


def _remember(store: ArtifactStore, name: str, job_id: str) -> None:
    runs = _history(store, name)
    runs = [r for r in runs if r.get("job_id") != job_id]
    runs.append({"job_id": job_id, "at": datetime.now(timezone.utc).isoformat()})
    store.put_json("cache", _history_id(name), HISTORY, {"name": name, "runs": runs[-100:]})
