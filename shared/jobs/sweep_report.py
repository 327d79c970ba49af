"""A sweep's report: every child's figures, compared with the previous sweep of the same name.

Figures are the numeric and boolean leaves of each child's manifest summary,
named by their path ("quality.fid", "checks.F3a.passed"). A figure is a
regression when it moves the wrong way by more than
max(tolerance * |previous|, tolerance_abs); which way is wrong comes from the
spec's `directions`, else from the name (distances, errors, losses, times:
lower is better; passed, accuracy, throughput: higher is better; a boolean
that turns false). A figure with no known direction that moves is "changed".
A child that succeeded last time and not this time is a regression too.
"""

from __future__ import annotations

import html
import math
import re
from datetime import datetime, timezone
from typing import Any

from scalespace.jobs.specs import SweepSpec

LOWER_BETTER = re.compile(r"(fid|kid|frechet|^fd|_fd|fd_|distance|error|loss|violation|nll|bpd|_s$|seconds|latency)")
HIGHER_BETTER = re.compile(r"(passed|^ok$|accuracy|precision|recall|coverage|per_second|throughput)")


def figures(summary: Any, prefix: str = "") -> dict[str, float | bool]:
    """Numeric and boolean leaves of a summary, by dotted path (lists are skipped: ids, shapes)."""
    out: dict[str, float | bool] = {}
    if isinstance(summary, dict):
        for k, v in summary.items():
            out.update(figures(v, f"{prefix}{k}."))
    elif isinstance(summary, bool):
        out[prefix[:-1]] = summary
    elif isinstance(summary, (int, float)) and math.isfinite(float(summary)):
        out[prefix[:-1]] = float(summary)
    return out


def direction(name: str, overrides: dict[str, str]) -> str | None:
    if name in overrides:
        return overrides[name]
    last = name.rsplit(".", 1)[-1].lower()
    if last in overrides:
        return overrides[last]
    if HIGHER_BETTER.search(last):
        return "higher"
    if LOWER_BETTER.search(last):
        return "lower"
    return None


def compare(name: str, old: float | bool | None, new: float | bool | None, spec: SweepSpec) -> dict[str, Any]:
    row: dict[str, Any] = {"figure": name, "previous": old, "current": new, "direction": direction(name, spec.directions)}
    if old is None or new is None:
        row["status"] = "new" if old is None else "missing"
        return row
    if isinstance(old, bool) or isinstance(new, bool):
        row["status"] = "same" if bool(old) == bool(new) else ("regression" if old and not new else "improved")
        return row
    change = new - old
    row["change"] = change
    row["relative_change"] = change / abs(old) if old else None
    if abs(change) <= max(spec.tolerance * abs(old), spec.tolerance_abs):
        row["status"] = "same"
    elif row["direction"] is None:
        row["status"] = "changed"
    else:
        worse = change > 0 if row["direction"] == "lower" else change < 0
        row["status"] = "regression" if worse else "improved"
    return row


def build_report(spec: SweepSpec, job_id: str, results: list[dict[str, Any]], previous_id: str | None,
                 previous: dict[str, Any] | None) -> dict[str, Any]:
    before = {c["key"]: c for c in (previous or {}).get("children", [])}
    children, comparisons = [], []
    for r in results:
        figs = figures(r.get("summary")) if r["state"] == "succeeded" else {}
        children.append({k: r.get(k) for k in ("key", "job_id", "kind", "state", "error")} | {"figures": figs})
        old = before.get(r["key"])
        if old is None:
            continue
        if old.get("state") == "succeeded" and r["state"] != "succeeded":
            comparisons.append({"key": r["key"], "figure": "state", "previous": "succeeded", "current": r["state"],
                                "direction": None, "status": "regression"})
            continue
        old_figs = old.get("figures", {})
        for name in sorted(set(old_figs) | set(figs)):
            comparisons.append({"key": r["key"], **compare(name, old_figs.get(name), figs.get(name), spec)})
    counts: dict[str, int] = {}
    for c in comparisons:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return {
        "name": spec.name,
        "job_id": job_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "compared_with": previous_id,
        "tolerance": {"relative": spec.tolerance, "absolute": spec.tolerance_abs},
        "children": children,
        "comparisons": comparisons,
        "regressions": [c for c in comparisons if c["status"] == "regression"],
        "counts": counts,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def render_html(report: dict[str, Any]) -> str:
    """One page: the children, then the regressions, then every comparison."""
    e = html.escape
    rows_children = "".join(
        f"<tr class='{e(c['state'])}'><td>{e(c['key'])}</td><td>{e(c['job_id'])}</td><td>{e(c['state'])}</td>"
        f"<td>{len(c['figures'])}</td><td>{e(c.get('error') or '')}</td></tr>" for c in report["children"])

    def table(rows: list[dict[str, Any]]) -> str:
        body = "".join(
            f"<tr class='{e(r['status'])}'><td>{e(r['key'])}</td><td>{e(r['figure'])}</td>"
            f"<td>{e(_fmt(r.get('previous')))}</td><td>{e(_fmt(r.get('current')))}</td>"
            f"<td>{e(_fmt(r.get('relative_change')))}</td><td>{e(r.get('direction') or '')}</td>"
            f"<td>{e(r['status'])}</td></tr>" for r in rows)
        return ("<table><tr><th>cell</th><th>figure</th><th>previous</th><th>current</th><th>relative change</th>"
                f"<th>better</th><th>status</th></tr>{body}</table>")

    base = report["compared_with"] or "none (first sweep of this name)"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sweep {e(report['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}.regression,.failed{{background:#fdd}}
.improved{{background:#dfd}}.changed{{background:#ffd}}</style></head><body>
<h1>Sweep {e(report['name'])}</h1>
<p>job {e(report['job_id'])}, {e(report['created_at'])}; compared with {e(base)};
tolerance {e(_fmt(report['tolerance']['relative']))} relative, {e(_fmt(report['tolerance']['absolute']))} absolute.</p>
<h2>Regressions: {len(report['regressions'])}</h2>{table(report['regressions'])}
<h2>Children</h2><table><tr><th>cell</th><th>job</th><th>state</th><th>figures</th><th>error</th></tr>{rows_children}</table>
<h2>All comparisons</h2>{table(report['comparisons'])}
</body></html>
"""
