"""An API and workers sharing a machine, with a real Redis and SeaweedFS: `scalespace api` with
SCALESPACE_API_WORKERS=2 (two processes on one port; every scrape of /metrics, whichever process answers it,
counts every submission once; the metrics folder goes with the server), and a worker at
SCALESPACE_WORKER_NICE=10 (every one of its threads at that niceness, and it runs jobs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from service_infra import TOKEN, free_port, pids, proc_stat, settings_env, submit, wait_for, wait_state

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 5}
SUBMISSIONS = 24


def _children(pid: int) -> list[int]:
    """The API's serving processes: its children started by multiprocessing's spawn."""
    out = []
    for other in pids():
        fields = proc_stat(other)
        try:
            if fields is not None and int(fields[1]) == pid and b"spawn_main" in Path(f"/proc/{other}/cmdline").read_bytes():
                out.append(other)
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def _count(text: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("scalespace_api_submit_seconds_count"))


def test_two_api_processes_share_one_port_and_their_metrics(make_settings, tmp_path):
    port, scratch, servers = free_port(), tmp_path / "scratch", []
    scratch.mkdir()
    env = dict(settings_env(make_settings()), SCALESPACE_API_PORT=str(port), SCALESPACE_API_WORKERS="2",
               TMPDIR=str(scratch))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(tmp_path / "api.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "scalespace.cli", "api"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_for(lambda: httpx.get(f"{base}/v1/ready", timeout=5).status_code == 200, 180, "the API", every_s=0.3)
        servers = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 60, "two API processes")
        assert [p.name for p in scratch.iterdir()][0].startswith("scalespace-api-metrics-")
        local = threading.local()

        def submit(k: int) -> str:  # a connection per thread: the kernel hands them to either process
            if not hasattr(local, "c"):
                local.c = httpx.Client(base_url=base, headers=headers, timeout=60)
            r = local.c.post("/v1/jobs", json={"spec": dict(SPEC, seed=k)})
            assert r.status_code == 201, r.text
            return r.json()["id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(submit, range(SUBMISSIONS)))
        assert len(set(ids)) == SUBMISSIONS
        # a fresh connection a scrape: each may land on either process, and each sees every submission
        counts = {_count(httpx.get(f"{base}/metrics", headers=headers, timeout=30).text) for _ in range(12)}
        assert counts == {SUBMISSIONS}
        assert httpx.get(f"{base}/v1/jobs?limit=1000", headers=headers, timeout=30).json()["count"] == SUBMISSIONS
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
    assert rc == 0, (tmp_path / "api.log").read_text()[-3000:]
    assert list(scratch.iterdir()) == []  # the metrics folder left with the server
    wait_for(lambda: not any(_alive(pid) for pid in servers), 10, "the API's processes to end")


def _niceness(pid: int, tid: int) -> int:
    return int(proc_stat(pid, tid)[16])


def test_a_worker_takes_its_niceness_before_its_threads_start(api, settings, worker_process):
    assert os.nice(0) < 10  # this test's own processes run less nice: the worker's niceness is its own doing
    w = worker_process(settings, "nice", SCALESPACE_WORKER_NICE="10")
    job = submit(api, dict(SPEC, seed=3))
    assert wait_state(api, job["id"], timeout_s=180)["state"] == "succeeded"
    threads = [int(t.name) for t in Path(f"/proc/{w.proc.pid}/task").iterdir()]
    assert len(threads) > 3  # Celery's, the pulse, the upload threads: all started after the niceness
    assert {_niceness(w.proc.pid, t) for t in threads} == {10}
    assert "niceness 10 (SCALESPACE_WORKER_NICE)" in w.text()
