"""The `evaluate` job on digits: every property SPEC decides comes out as SPEC says, for every process."""

import json
import re
from html import escape

import pytest

from evaluate_helpers import fast_spec
from scalespace.cli import main
from scalespace.evaluation.check import KINDS
from scalespace import ScalespaceError
from scalespace.jobs import parse_spec, run_job
from scalespace.storage import LocalStore

PROCESSES = ("vp", "ve", "blurring", "heat", "osmosis")
#: what each process must report, beyond agreement: a few keys SPEC singles out
MUST_HOLD = {
    "vp": {"F1", "F2", "F3a", "F3b", "F3c", "F4", "F5-permutation", "F5-grey-shift", "R1", "R2", "R3", "R4"},
    "ve": {"F3a", "F3b", "F4", "F5-permutation", "F5-circular-shift", "F5-grey-shift"},
    "blurring": {"F3a", "F3b", "F4", "F5-flip-horizontal", "F5-transpose", "F5-rotate-90", "F5-grey-shift"},
    "heat": {"F2", "F3a", "F3b", "F4", "F5-flip-vertical", "F5-grey-shift", "F5-mean"},
    "osmosis": {"F4", "F5-mean", "O1", "O2", "O3"},
}
MUST_FAIL = {"blurring": {"F5-permutation", "F5-circular-shift"}, "heat": {"F5-permutation", "F5-circular-shift"}}


@pytest.mark.parametrize("process", PROCESSES)
def test_evaluate_agrees_with_spec(process, tmp_path):
    store = LocalStore(tmp_path)
    # osmosis recomputes P_s(u0_hat) at every reverse step: fewer steps keep the test short
    manifest = run_job(fast_spec(process, **({"reverse_steps": 10} if process == "osmosis" else {})), store)
    job = tmp_path / manifest["job_id"]
    report = json.loads((job / "report.json").read_text())
    checks = {c["key"]: c for c in report["checks"]}
    asserted = [c for c in checks.values() if c["expected"] in ("holds", "fails")]
    assert len(asserted) >= 12
    assert all(c["agrees"] for c in asserted), [(c["key"], c["figure"], c["tolerance"]) for c in asserted if not c["agrees"]]
    # every check says what kind of evidence it is; identities are not counted as evidence
    assert {c["kind"] for c in report["checks"]} <= set(KINDS)
    evidence = [c for c in asserted if c["kind"] != "identity"]
    for key in MUST_HOLD[process]:
        assert checks[key]["expected"] == "holds" and checks[key]["holds"] is True, key
    for key in MUST_FAIL.get(process, ()):
        # theory says these do not hold: the report must say so, with a figure far above the tolerance
        assert checks[key]["expected"] == "fails" and checks[key]["holds"] is False, key
        c = checks[key]  # a test's figure is its p-value, well below the level; a bound's is far above it
        assert c["figure"] <= c["tolerance"] / 2 if c["kind"] == "test" else c["figure"] > 1000 * c["tolerance"]
    summary = manifest["summary"]
    assert summary["passed"] is True and summary["checks_agreeing"] == summary["checks_asserted"] == len(evidence)
    assert summary["checks"]["F3a"]["passed"] is True
    # artifacts: JSON, plots and one self-contained page
    names = {a["name"] for a in manifest["artifacts"]}
    assert {"report.json", "report.html", "lyapunov.png", "invariances.png", "fd.png"} <= names
    assert ("density.png" in names) == (process == "vp")
    html = (job / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len([n for n in names if n.endswith(".png")])
    assert not re.search(r"(src|href)=['\"]https?:", html)
    assert html.count("<tr") >= len(report["checks"])
    assert ("does not hold" in html) == any(c["holds"] is False for c in report["checks"])
    for c in report["checks"]:
        assert escape(c["name"]) in html


def test_density_comparison_in_the_vp_report(tmp_path):
    manifest = run_job(fast_spec("vp", checks=["density"], density_cells=800), LocalStore(tmp_path))
    report = json.loads((tmp_path / manifest["job_id"] / "report.json").read_text())
    dens = report["density"]
    assert dens["max_l1"] < 1e-3 and manifest["summary"]["density_max_l1"] == dens["max_l1"]
    assert all(abs(r["mass"] - 1) < 1e-9 for r in dens["rows"])
    # the sample histograms are compared too; their L1 is the sampling floor, far above the grid's error
    assert all(r["l1_samples_osmosis"] > dens["max_l1"] for r in dens["rows"])


def test_minimal_spec_is_valid_and_bad_specs_are_one_line_errors():
    spec = parse_spec({"kind": "evaluate", "process": "vp", "data": "digits"})
    assert spec.checks == ["forward", "invariances", "reverse", "robustness", "density"] and spec.n == 256
    with pytest.raises(ScalespaceError, match=r"^checks\.0: "):
        parse_spec({"kind": "evaluate", "process": "vp", "data": "digits", "checks": ["nope"]})
    with pytest.raises(ScalespaceError, match=r"^robustness\.eps: .*eps must be > 0"):
        parse_spec({"kind": "evaluate", "process": "vp", "data": "digits", "robustness": {"eps": [0.0]}})
    with pytest.raises(ScalespaceError, match="^process: unknown process"):
        parse_spec({"kind": "evaluate", "process": "warp", "data": "digits"})


def test_osmosis_oracle_memory_and_guidance_are_checked_before_running(tmp_path):
    big = fast_spec("osmosis", data="fashion-mnist", process_params={"K": 2000})
    with pytest.raises(ScalespaceError, match=r"^data_limit: the osmosis oracle would hold .* GiB"):
        run_job(big, LocalStore(tmp_path))
    per_sample = fast_spec("osmosis", process_params={"guidance": "per_sample"})
    with pytest.raises(ScalespaceError, match=r"^process_params.guidance"):
        run_job(per_sample, LocalStore(tmp_path))
    assert not any(tmp_path.iterdir()) or all(not (p / "manifest.json").exists() for p in tmp_path.iterdir())


def test_cli_evaluate_prints_the_table(tmp_path, capsys):
    args = ["evaluate", "--process", "heat", "--data", "digits", "--checks", "forward,invariances", "--n", "32",
            "--eval-steps", "4", "--n-invariance", "8", "--out", str(tmp_path), "--quiet", "--table"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "evaluate job evaluate-" in out and "| F5 invariance under permutation | test | does not hold | fails | yes |" in out
    assert main(["evaluate", "--process", "warp", "--data", "digits", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "process: unknown process 'warp'" in err
