"""An API and workers sharing a machine: the API's own metrics added up over its processes (Prometheus's
multiprocess folder), a frozen heap, the --workers check, a worker's niceness and serve's default for it."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

#: one API process's admission figures: observe the given durations, then print what a scrape of it shows
OBSERVE = """
import sys
from scalespace.scheduler.metrics import ApiMetrics
m = ApiMetrics()
for s in sys.argv[1:]:
    m.submit_seconds.observe(float(s))

class NoJobStore:  # the scrape's job-store half is not what this test looks at
    def snapshot(self, lanes):
        return {"depth": {x: 0 for x in lanes}, "oldest_age_s": {x: 0 for x in lanes}, "running": 0,
                "dead_letters": 0, "stats": {}, "durations": {}, "steps_per_second": {}}
    def workers(self):
        return []

print(m.render(NoJobStore()).decode())
"""


def _scrape(env: dict[str, str], *durations: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", OBSERVE, *map(str, durations)], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in out.splitlines()
            if line.startswith("scalespace_api_submit_seconds_")}


def test_every_process_scrape_adds_up_all_processes_figures_in_the_multiprocess_folder(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    # one process alone (no folder) knows only its own: the counterexample a multi-process API must not show
    assert _scrape(env, 0.001, 0.003)["scalespace_api_submit_seconds_count"] == 2
    assert _scrape(env, 0.004)["scalespace_api_submit_seconds_count"] == 1
    shared = dict(env, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    _scrape(shared, 0.001, 0.003)
    got = _scrape(shared, 0.004)  # the second process's scrape shows both processes' submissions
    assert got["scalespace_api_submit_seconds_count"] == 3
    assert got["scalespace_api_submit_seconds_sum"] == pytest.approx(0.008)
    assert got['scalespace_api_submit_seconds_bucket{le="0.002"}'] == 1
    assert got['scalespace_api_submit_seconds_bucket{le="0.005"}'] == 3


def test_the_served_app_freezes_the_heap_and_create_app_does_not(settings, monkeypatch):
    from scalespace.scheduler import api

    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    api.create_app(settings)
    assert frozen == []  # the tests' and embedders' apps leave the collector alone
    app = api.serving_app(settings)
    assert frozen == [True] and app.state.services.settings is settings


@pytest.mark.parametrize("given, words", [(["--workers", "0"], "--workers: 0 processes"),
                                          (["--workers", "65"], "--workers: 65 processes")])
def test_api_refuses_a_worker_count_out_of_range(given, words, settings, monkeypatch, capsys):
    from scalespace.cli import main
    from scalespace.config import get_settings

    monkeypatch.setenv("SCALESPACE_REDIS_URL", settings.redis_url)
    get_settings.cache_clear()
    try:
        assert main(["api", *given]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert words in err and "1 to 64" in err


def test_the_worker_count_setting_is_checked(monkeypatch):
    from pydantic import ValidationError

    from scalespace.config import Settings

    assert Settings().api_workers == 1
    monkeypatch.setenv("SCALESPACE_API_WORKERS", "0")
    with pytest.raises(ValidationError, match="api_workers"):
        Settings()


NICE = "import os, sys; from scalespace.cli.service import _be_nice; _be_nice(int(sys.argv[1])); print(os.nice(0))"


@pytest.mark.parametrize("start, asked, ends", [(0, 10, 10), (0, 0, 0), (12, 10, 12)])
def test_a_worker_niceness_only_goes_up(start, asked, ends):
    """SCALESPACE_WORKER_NICE=10 from 0 gives 10; a process started nicer (12) stays so, not an error."""
    out = subprocess.run(["nice", "-n", str(start), sys.executable, "-c", NICE, str(asked)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert int(out) == ends


def test_serve_runs_its_workers_nice_unless_told_otherwise(settings, monkeypatch):
    from scalespace.scheduler.serve import worker_env

    monkeypatch.delenv("SCALESPACE_WORKER_NICE", raising=False)
    assert worker_env(settings, "unix:///r.sock", "/out")["SCALESPACE_WORKER_NICE"] == "10"
    monkeypatch.setenv("SCALESPACE_WORKER_NICE", "0")
    assert worker_env(settings, "unix:///r.sock", "/out")["SCALESPACE_WORKER_NICE"] == "0"
