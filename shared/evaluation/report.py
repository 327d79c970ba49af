"""The one-page HTML report of an `evaluate` job: self-contained (inline CSS, images as data URIs)."""

from __future__ import annotations

import base64
import html
import json
import math
from typing import Any

from scalespace.evaluation.check import counted
from scalespace.evaluation.pictures import PICTURES

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 2px solid #e3e6eb; padding-bottom: 4px; }
p.sub { color: #5b6475; margin: 0 0 16px; }
.banner { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 12px 0 4px; }
.ok { background: #e7f4ea; color: #1b5e20; } .bad { background: #fdecea; color: #b71c1c; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { border: 1px solid #dde1e7; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.holds { color: #1b5e20; font-weight: 600; white-space: nowrap; }
td.fails { color: #b71c1c; font-weight: 600; white-space: nowrap; }
td.na { color: #8a93a3; white-space: nowrap; }
tr.disagree td { background: #fff3f2; }
td.expl { color: #394152; font-size: 12.5px; max-width: 520px; }
figure { margin: 14px 0; } figure img { max-width: 100%; border: 1px solid #e3e6eb; }
figcaption { font-size: 12.5px; color: #5b6475; }
pre { background: #f3f5f8; padding: 10px; overflow-x: auto; font-size: 12px; border-radius: 4px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
"""

CAPTIONS = {
    "lyapunov.png": "F3: the Lyapunov sequences over the forward trajectory (Monte Carlo standard errors as bars).",
    "invariances.png": "F5: each transform applied before and after the process; green commutes, red does not.",
    "fd.png": "Fréchet distance (pixel space) of p_t to the data and to the steady state.",
    "variance.png": "Mean and variance of the samples at each step.",
    "reverse_entropy.png": "R3: conditional entropy added by each reverse step.",
    "density.png": "vp grey-value density against the 1-D osmosis solution with standard normal guidance.",
    "sensitivity.png": "Initial-noise sensitivity: output distance against the size of a perturbation of u_T.",
    "steps.png": "Sample quality against the number of reverse steps, and the spread over seeds.",
    "scale_space.png": "The forward scale-space: data images (rows) at 8 times from 0 to T (columns). Every picture "
                       "shows values on one grey scale: -1 black, +1 white, clipped outside [-1, 1].",
    "reverse_trajectory.png": "The reverse trajectory of samples 0 to 3: the state u_t and the denoiser's estimate of u_0 "
                              "from it, from the start state to the sample.",
    "sample_grid.png": "The samples of the reverse checks.",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3g}" if v != 0 else "0"
    return html.escape(str(v))


def _verdict_cell(c: dict[str, Any]) -> str:
    if not c["applies"]:
        return "<td class='na'>not applicable</td>"
    if c["holds"] is True:
        return "<td class='holds'>holds</td>"
    if c["holds"] is False:
        return "<td class='fails'>does not hold</td>"
    return "<td class='na'>–</td>"


def _expected_text(e: str) -> str:
    return {"holds": "holds", "fails": "fails", "report": "reported only", "n/a": "–"}.get(e, e)


def checks_table(checks: list[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        agree = "✔" if c["agrees"] else "✘ disagrees"
        if c["expected"] in ("report", "n/a"):
            agree = "–"
        rows.append(
            f"<tr class='{'' if c['agrees'] else 'disagree'}'><td>{html.escape(c['name'])}</td>"
            f"<td>{html.escape(str(c.get('kind', '–')))}</td>{_verdict_cell(c)}"
            f"<td>{_expected_text(c['expected'])}</td><td>{agree}</td><td class='num'>{_fmt(c['figure'])}</td>"
            f"<td class='num'>{_fmt(c['tolerance'])}</td><td class='expl'>{html.escape(c['explanation'])}</td></tr>"
        )
    return ("<table><thead><tr><th>property</th><th>kind</th><th>observed</th><th>theory</th><th>agrees</th><th>figure</th>"
            "<th>tolerance</th><th>how it is measured</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return (f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(CAPTIONS.get(name, name))}</figcaption></figure>")


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    return "<table><tbody>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows) + "</tbody></table>"


def _trajectory_table(rows: list[dict[str, Any]]) -> str:
    cols = [("index", "i"), ("t", "t"), ("variance", "variance"), ("conditional_entropy", "H(u_t|u_0)"),
            ("information_loss", "H(u_0|u_t)"), ("kl_standard_normal", "KL to N(0,I)"), ("marginal_entropy", "H(p_t)"),
            ("histogram_entropy", "histogram H"), ("fd_data", "FD to data"), ("fd_steady", "FD to steady")]
    step = max(1, len(rows) // 12)
    pick = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = "".join("<tr>" + "".join(f"<td class='num'>{_fmt(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in pick)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _robustness(rob: dict[str, Any]) -> str:
    parts = []
    for s in rob.get("sensitivity", []):
        rows = "".join(f"<tr><td class='num'>{_fmt(r['eps'])}</td><td class='num'>{_fmt(r['distance_mean'])}</td>"
                       f"<td class='num'>{_fmt(r['distance_median'])}</td><td class='num'>{_fmt(r['distance_max'])}</td></tr>"
                       for r in s["rows"])
        parts.append(f"<div><p><b>{html.escape(s['sampler'])}</b>, {s['steps']} steps, n = {s['n']}, slope {_fmt(s.get('slope'))}</p>"
                     "<table><thead><tr><th>eps</th><th>mean distance</th><th>median</th><th>max</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table></div>")
    sens = f"<div class='grid2'>{''.join(parts)}</div>" if parts else ""
    spread = rob.get("seed_spread")
    sp = ""
    if spread:
        rows = "".join(f"<tr><td>{r['seed']}</td><td class='num'>{_fmt(r['fd'])}</td><td class='num'>[{_fmt(r['ci_low'])}, "
                       f"{_fmt(r['ci_high'])}]</td><td class='num'>{r['n']}</td><td class='num'>{_fmt(r.get('kid_mean'))}</td></tr>"
                       for r in spread["per_seed"])
        ci = ""
        if "mean_ci_low" in spread:
            ci = (f"; 95% Student-t interval of the mean over the {len(spread['per_seed'])} seeds "
                  f"[{_fmt(spread['mean_ci_low'])}, {_fmt(spread['mean_ci_high'])}]")
        sp = (f"<p>Seed spread ({html.escape(spread['extractor'])} Fréchet distance to {spread['n_reference']} held-out images): "
              f"mean {_fmt(spread['mean'])}, std {_fmt(spread['std'])}{ci}. Per seed, a BCa bootstrap interval over "
              "its samples, with the upward shift a Fréchet distance takes on resamples removed first (shown as "
              "bootstrap_bias in report.json): an interval for the distance expected at this sample size; the "
              "distance of infinitely many samples lies about that shift lower.</p><table><thead><tr><th>seed</th>"
              f"<th>FD</th><th>BCa 95%</th><th>n</th><th>KID</th></tr></thead><tbody>{rows}</tbody></table>")
    mem = rob.get("memorisation")
    mm = ""
    if mem:
        mm = (f"<p>Memorisation: median nearest-neighbour distance to the training set over that of held-out images = "
              f"<b>{_fmt(mem['ratio'])}</b> ({mem['n_samples']} samples, {mem['n_heldout']} held-out, {mem['n_train']} training "
              "images; about 1 for fresh samples, near 0 for copies: the oracle copies by construction).</p>")
    return sens + sp + mm


def render_html(report: dict[str, Any], plots: dict[str, bytes]) -> str:
    e = html.escape
    p, d = report["process"], report["data"]
    checks = report.get("checks", [])
    asserted = [c for c in checks if counted(c)]
    identities = [c for c in checks if c["expected"] in ("holds", "fails") and not counted(c)]
    agree = sum(c["agrees"] for c in asserted)
    ok = agree == len(asserted)
    banner = (f"<div class='banner {'ok' if ok else 'bad'}'>{agree} of {len(asserted)} properties theory decides agree with it"
              f"{'' if ok else ': see the rows marked ✘'}; {len(identities)} more are identities (true by construction, "
              f"no evidence, not counted); {len(checks) - len(asserted) - len(identities)} more are reported or do not "
              "apply. Kind: test = a statistical test on samples, bound = a figure against a stated threshold, "
              "identity = holds by construction.</div>")
    q = report.get("quality") or {}
    facts = [("process", f"{p['name']} (T = {p['T']})"), ("data", f"{d['name']}, images {'x'.join(map(str, d['shape']))}, "
             f"{d['n_train']} training / {d['n_heldout']} held-out"), ("forward samples", report.get("n_forward")),
             ("model (reverse)", report.get("model"))]
    if q:
        facts.append(("quality of the reverse samples", f"{q.get('extractor')} Fréchet distance {_fmt(q.get('fid'))} "
                      f"(n = {q.get('n_samples')} samples vs {q.get('n_reference')} held-out)"
                      + (f"; KID {_fmt(q.get('kid_mean'))} ± {_fmt(q.get('kid_std'))}" if q.get("kid_mean") is not None else "")))
    if report.get("density"):
        facts.append(("osmosis vs vp density, max L1", report["density"]["max_l1"]))
    # wide plots on their own row, the others two by two
    layout = [["lyapunov.png"], ["invariances.png", "fd.png"], ["variance.png", "reverse_entropy.png"], ["density.png"],
              ["sensitivity.png", "steps.png"]]
    imgs = ""
    for row in layout:
        present = [n for n in row if n in plots]
        if len(present) == 2:
            imgs += "<div class='grid2'>" + "".join(_img(n, plots[n]) for n in present) + "</div>"
        elif present:
            imgs += _img(present[0], plots[present[0]])
    if (report.get("robustness") or {}).get("sensitivity") and "sensitivity.png" not in plots:
        imgs += ("<p class='sub'>Initial-noise sensitivity: no plot, every output was unchanged at every eps "
                 "(distance 0; the table under Robustness lists them).</p>")
    pics = "".join(_img(n, plots[n]) for n in PICTURES if n in plots)
    traj = report.get("trajectory")
    timings = report.get("timings") or {}
    total = sum(timings.values()) or 1.0
    tim = _kv_table([(k, f"{v:.1f} s ({100 * v / total:.0f}%)") for k, v in timings.items()])
    spec = e(json.dumps(report.get("spec", {}), indent=2, sort_keys=True))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>scalespace report: {e(p['name'])} on {e(d['name'])}</title><style>{CSS}</style></head>
<body><main>
<h1>Scale-space report: {e(p['name'])} on {e(d['name'])}</h1>
<p class="sub">job {e(report.get('job_id', ''))} · seed {report.get('seed')} · {e(report.get('created_at', ''))}</p>
{banner}
{_kv_table(facts)}
<h2>Properties</h2>
{checks_table(checks)}
<h2>Plots</h2>
{imgs}
{'<h2>Pictures</h2>' + pics if pics else ''}
{'<h2>Forward trajectory (selected steps)</h2>' + _trajectory_table(traj) if traj else ''}
{'<h2>Robustness</h2>' + _robustness(report['robustness']) if report.get('robustness') else ''}
<h2>Time spent</h2>
{tim}
<h2>Spec</h2>
<pre>{spec}</pre>
</main></body></html>
"""


__all__ = ["render_html"]
