"""`scalespace serve`: API + worker + embedded Redis on one machine, driven by the Python client and the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from service_infra import free_port, interrupt, wait_for

from scalespace.scheduler.client import Client
from scalespace.jobs import run_job
from scalespace.storage import LocalStore

pytestmark = pytest.mark.integration

SPEC = {"kind": "sample", "process": "ve", "data": "digits", "n": 4, "steps": 10, "seed": 5}


def test_serve_runs_jobs_with_nothing_else_installed(tmp_path):
    port, out = free_port(), tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALESPACE_", "AWS_"))}
    env.update(SCALESPACE_HEARTBEAT_FILE=str(tmp_path / "hb"), SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S="5",
               PYTHONUNBUFFERED="1")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "scalespace.cli", "serve", "--port", str(port), "--out", str(out)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with Client(f"http://127.0.0.1:{port}", token="") as c:
            wait_for(lambda: c.http.get("/v1/ready").status_code == 200, 120, "serve to be ready", every_s=0.2)
            job = c.submit(SPEC, idempotency_key="serve-1")
            assert c.submit(SPEC, idempotency_key="serve-1")["id"] == job["id"]
            seen = []
            done = c.wait(job["id"], timeout_s=240, poll_s=0.2, on_progress=lambda j: seen.append(j["state"]))
            assert done["state"] == "succeeded", done["error"]
            assert seen[-1] == "succeeded" and done["worker"].startswith("serve0@")
            paths = c.download(job["id"], tmp_path / "fetched")  # through the API (local store), sha256 checked
        assert {p.name for p in paths} >= {"samples.npz", "grid.png", "manifest.json"}
        assert (out / job["id"] / "manifest.json").is_file()  # the local store layout users open by hand
        twin = LocalStore(tmp_path / "embedded")
        run_job(SPEC, twin, job_id="twin")
        with np.load(tmp_path / "fetched" / "samples.npz", allow_pickle=False) as a, \
                np.load(io.BytesIO(twin.get("jobs", "twin", "samples.npz")), allow_pickle=False) as b:
            np.testing.assert_array_equal(a["samples"], b["samples"])
        # the CLI against the same service
        cli_env = dict(env, SCALESPACE_API_URL=f"http://127.0.0.1:{port}")
        status = subprocess.run([sys.executable, "-m", "scalespace.cli", "status", job["id"]], env=cli_env,
                                capture_output=True, text=True, timeout=120)
        assert status.returncode == 0 and f"{job['id']} sample succeeded" in status.stdout
        missing = subprocess.run([sys.executable, "-m", "scalespace.cli", "status", "no-such-job"], env=cli_env,
                                 capture_output=True, text=True, timeout=120)
        assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no job 'no-such-job'" in missing.stderr
        # serve prints what a client exports, with Redis at a fixed address under --out
        text = (tmp_path / "serve.log").read_text(errors="replace")
        assert f"export SCALESPACE_API_URL=http://127.0.0.1:{port}" in text
        assert f"export SCALESPACE_REDIS_URL=unix://{out.resolve()}/.service/redis.sock" in text
        # a named sweep through the running service's API
        sweeps = tmp_path / "sweeps.yaml"
        sweeps.write_text("tiny:\n  processes: [vp]\n  data: [digits]\n  template: {kind: sample, n: 2, steps: 5}\n")
        swept = subprocess.run([sys.executable, "-m", "scalespace.cli", "sweep", "run", "tiny", "--file", str(sweeps),
                                "--api", f"http://127.0.0.1:{port}", "--lane", "interactive", "--wait"],
                               env=env, capture_output=True, text=True, timeout=300)
        assert swept.returncode == 0, swept.stderr[-2000:]
        assert swept.stdout.strip().startswith("sweep-") and "sweep tiny: succeeded" in swept.stderr
    finally:
        interrupt(proc)
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert not (tmp_path / "hb.0").exists()  # the worker stopped cleanly
