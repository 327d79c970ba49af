"""The one spec reader at every door: an alias bomb or an oversized file is one line and exit 2, fast and small."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalespace import ScalespaceError
from scalespace.jobs.spec_files import MAX_DEPTH, load_spec_text, read_spec_file

#: nine levels of nine aliases: 9^9 (387 million) leaves from a few hundred bytes
BOMB = "kind: sample\nprocess: vp\ndata: digits\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
DOORS = {
    "run": lambda f: ["run", str(f), "--quiet"],
    "submit": lambda f: ["submit", str(f)],
    "sweep run --file": lambda f: ["sweep", "run", "nightly", "--file", str(f)],
}


#: the command line in a child that reports its own peak resident memory (VmHWM: this process image's, in KiB)
CHILD = """import sys
from scalespace.cli import main
rc = main(sys.argv[1:])
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("VmHWM", hwm, file=sys.stderr)
sys.exit(rc)
"""


def _cli(args: list[str], tmp_path: Path, **env: str) -> tuple[int, str, float, float]:
    """rc, stderr, seconds and peak MiB of the command line with ARGS (address space capped at 2 GiB)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    environ = {**os.environ, "SCALESPACE_API_URL": "http://127.0.0.1:9", "SCALESPACE_REDIS_URL": "redis://127.0.0.1:9/0",
               "SCALESPACE_RESULTS_DIR": str(tmp_path / "results"), "SCALESPACE_STARTUP_WAIT_S": "0", **env}
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=environ, cwd=tmp_path, preexec_fn=cap, text=True)
    try:
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    seconds = time.monotonic() - t0
    lines = err.strip().splitlines()
    peak_mib = int(lines.pop().split()[1]) / 1024 if lines and lines[-1].startswith("VmHWM") else float("inf")
    return p.returncode, "\n".join(lines) + "\n", seconds, peak_mib


@pytest.mark.parametrize("door", sorted(DOORS))
def test_an_alias_bomb_is_one_line_and_exit_2_at_every_door(tmp_path, door):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 600
    rc, err, seconds, peak_mib = _cli(DOORS[door](bomb), tmp_path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "anchors and aliases" in err and str(bomb) in err
    assert seconds < 15  # about half a second of it is Python starting; the bomb itself is refused at once
    assert peak_mib < 100, f"{peak_mib:.0f} MiB"


@pytest.mark.parametrize("door", sorted(DOORS))
def test_an_oversized_spec_file_is_one_line_and_exit_2_at_every_door(tmp_path, door):
    big = tmp_path / "big.yaml"
    big.write_text("kind: sample\nprocess: vp\ndata: digits\nbetas: [" + ", ".join(["0.1"] * 400_000) + "]\n")
    assert big.stat().st_size > 1 << 20
    rc, err, seconds, peak_mib = _cli(DOORS[door](big), tmp_path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "SCALESPACE_MAX_SPEC_BYTES" in err and seconds < 15 and peak_mib < 100
    small = tmp_path / "small.yaml"
    small.write_text("kind: sample\nprocess: vp\ndata: digits\n# " + "x" * 3000 + "\n")
    rc, err, _, _ = _cli(DOORS[door](small), tmp_path, SCALESPACE_MAX_SPEC_BYTES="2048")  # the setting lowers the cap
    assert rc == 2 and "limit of 2048 bytes (SCALESPACE_MAX_SPEC_BYTES)" in err, err


def test_the_reader_refuses_anchors_depth_and_unreadable_values():
    assert load_spec_text('{"kind": "sample", "n": 4}') == {"kind": "sample", "n": 4}  # JSON is YAML
    assert load_spec_text("kind: sample\nprocess_params: {betas: [0.1, 0.2]}\n") == {
        "kind": "sample", "process_params": {"betas": [0.1, 0.2]}}
    cases = [
        ("a: &x 1\nb: 2\n", "anchors and aliases"),
        ("a: *x\n", "anchors and aliases"),  # an alias without its anchor: refused before anything is built
        ("a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", f"deeper than {MAX_DEPTH} levels"),
        ("n: 1" + "0" * 5000 + "\n", "cannot be read"),
        ("kind: [sample\n", "not valid YAML/JSON"),
        ("a: !!python/object:os.system {}\n", "not valid YAML/JSON"),  # the safe loader only
    ]
    for text, needle in cases:
        with pytest.raises(ScalespaceError, match=needle) as e:
            load_spec_text(text, "job file x.yaml", max_bytes=1 << 20)
        assert "\n" not in str(e.value) and str(e.value).startswith("job file x.yaml")
    with pytest.raises(ScalespaceError, match="above the limit of 1024"):
        load_spec_text("#" * 1025, max_bytes=1024)
    with pytest.raises(ScalespaceError, match="not UTF-8"):
        load_spec_text(b"a: \xff\n", max_bytes=1024)


def test_read_spec_file_reads_no_further_than_the_cap(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("kind: sample\nprocess: vp\ndata: digits\n")
    assert read_spec_file(f, max_bytes=1024) == {"kind": "sample", "process": "vp", "data": "digits"}
    with pytest.raises(ScalespaceError, match="cannot read job file"):
        read_spec_file(tmp_path / "missing.yaml", max_bytes=1024)


def test_param_values_go_through_the_same_reader(tmp_path, capsys):
    from scalespace.cli import main

    rc = main(["sample", "--process", "vp", "--data", "digits", "--param", "betas=[&a [1, 2], *a]",
               "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--param betas" in err and "anchors and aliases" in err


# --- finite floats only -------------------------------------------------------------------------

@pytest.mark.parametrize("args,field", [
    (["run", "{job}"], "eta: Infinity"),
    (["submit", "{job}"], "eta: Infinity"),  # refused before the API (unreachable here) is contacted
    (["sample", "--process", "vp", "--data", "digits", "--eta", "inf"], "eta: Infinity"),
    (["sample", "--process", "vp", "--data", "digits", "--eta", "nan"], "eta: NaN"),
    (["sample", "--process", "vp", "--data", "digits", "--param", "schedule=custom", "--param", "betas=[0.1, .nan]"],
     "process_params.betas.1: NaN"),
])
def test_the_command_line_refuses_non_finite_floats(tmp_path, capsys, monkeypatch, args, field):
    from scalespace.cli import main
    from scalespace.config import get_settings

    job = tmp_path / "job.yaml"
    job.write_text("kind: sample\nprocess: vp\ndata: digits\nn: 2\neta: .inf\n")
    monkeypatch.setenv("SCALESPACE_API_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    try:
        rc = main([a.replace("{job}", str(job)) for a in args] + (["--out", str(tmp_path / "out"), "--quiet"]
                                                                   if args[0] in ("run", "sample") else []))
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"error: {field} is not allowed; use a finite number" in err, err
    assert not list((tmp_path / "out").rglob("manifest.json"))
