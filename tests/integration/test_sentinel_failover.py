"""Redis that fails over: a master, a replica and three Sentinels (quorum 2), the API and a worker process
that find Redis through the Sentinels. The master is failed over while jobs run (SENTINEL FAILOVER), then the
new master is killed (SIGKILL) while more jobs run: every job succeeds, is committed once, has one manifest
with intact artifacts, and submissions go on working after each failover."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from service_infra import TOKEN, free_port, submit, wait_for, wait_state

from scalespace.storage import S3Store

pytestmark = pytest.mark.integration

MASTER = "scalespace"
REDIS_PASSWORD = "master-secret"
SENTINEL_PASSWORD = "sentinel-secret"
SMALL = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 10}

SENTINEL = shutil.which("redis-sentinel")
if SENTINEL is None:
    pytest.skip("redis-sentinel is not installed (scripts/bootstrap.sh installs it)", allow_module_level=True)


def _client(port: int, password: str) -> Any:
    import redis

    return redis.Redis(port=port, password=password, socket_connect_timeout=0.5, socket_timeout=2,
                       decode_responses=True)


class Node:
    """A redis-server (master or replica) or a redis-sentinel on a free loopback port, in its own folder."""

    def __init__(self, folder: Path, args: list[str], password: str):
        self.folder, self.port, self.password = folder, free_port(), password
        folder.mkdir(parents=True, exist_ok=True)
        self.args, self.proc = args, None

    def start(self, binary: str, config: str = "") -> "Node":
        cmd = [binary]
        if config:  # a Sentinel rewrites its configuration file: it must have one
            conf = self.folder / "sentinel.conf"
            conf.write_text(config.format(port=self.port, dir=self.folder))
            cmd.append(str(conf))
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), *self.args],
            stdout=open(self.folder / "log", "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.client().ping(), 15, f"{binary} on {self.port}")
        return self

    def client(self) -> Any:
        return _client(self.port, self.password)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


SENTINEL_CONF = """port {port}
dir {dir}
sentinel resolve-hostnames no
requirepass %(sp)s
sentinel sentinel-pass %(sp)s
sentinel monitor %(name)s 127.0.0.1 %(master)d 2
sentinel auth-pass %(name)s %(mp)s
sentinel down-after-milliseconds %(name)s 1000
sentinel failover-timeout %(name)s 3000
sentinel parallel-syncs %(name)s 1
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    common = ["--save", "", "--appendonly", "no", "--protected-mode", "no", "--requirepass", REDIS_PASSWORD,
              "--masterauth", REDIS_PASSWORD]
    master = Node(tmp_path / "master", common, REDIS_PASSWORD).start(server)
    replica = Node(tmp_path / "replica", [*common, "--replicaof", "127.0.0.1", str(master.port)],
                   REDIS_PASSWORD).start(server)
    wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up", 15, "the replica to sync")
    conf = SENTINEL_CONF % {"sp": SENTINEL_PASSWORD, "name": MASTER, "master": master.port, "mp": REDIS_PASSWORD}
    sentinels = [Node(tmp_path / f"sentinel{i}", ["--sentinel"], SENTINEL_PASSWORD) for i in range(3)]
    for s in sentinels:
        s.start(SENTINEL, conf)
    try:
        for s in sentinels:  # each knows the replica and the two other Sentinels: a failover can be agreed
            wait_for(lambda s=s: len(s.client().sentinel_slaves(MASTER)) == 1
                     and len(s.client().sentinel_sentinels(MASTER)) == 2, 30, "the Sentinels to find each other")
        yield {"master": master, "replica": replica, "sentinels": sentinels}
    finally:
        for node in (*sentinels, replica, master):
            node.kill()


def _master_port(sentinel: Node) -> int:
    return int(sentinel.client().sentinel_get_master_addr_by_name(MASTER)[1])


def _failed_over(cluster: Any, to: Node) -> bool:
    """Every Sentinel names `to` as the master, and `to` says it is one."""
    return all(_master_port(s) == to.port for s in cluster["sentinels"]) \
        and to.client().info("replication")["role"] == "master"


def _check_jobs(api: Any, settings: Any, ids: list[str]) -> list[dict[str, Any]]:
    done = [wait_state(api, i, timeout_s=90) for i in ids]
    assert [d["state"] for d in done] == ["succeeded"] * len(ids), [(d["id"], d["state"], d["error"]) for d in done]
    store = S3Store.from_settings(settings)
    for d in done:
        manifest = store.manifest(d["id"])
        assert manifest is not None, d["id"]
        # one published manifest, of an attempt the job store counted
        assert 1 <= manifest["attempt"] <= d["attempts"], (d["id"], manifest["attempt"], d["attempts"])
        manifests = {p for p in store.list("jobs", d["id"]) if p.endswith("manifest.json")}
        assert manifests == {"manifest.json"}  # the attempts' folders hold their artifacts alone
        for a in manifest["artifacts"]:
            blob = store.get("jobs", d["id"], a["path"])
            assert hashlib.sha256(blob).hexdigest() == a["sha256"] and len(blob) == a["bytes"], (d["id"], a["path"])
    return done


def test_jobs_survive_a_failover_and_a_killed_master(cluster, make_settings, worker_process):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from scalespace.scheduler.jobstore import JobStore

    hosts = ",".join(f"127.0.0.1:{s.port}" for s in cluster["sentinels"])
    settings = make_settings(redis_url=None, redis_sentinels=hosts, redis_sentinel_master=MASTER,
                             redis_sentinel_password=SENTINEL_PASSWORD, redis_password=REDIS_PASSWORD)
    master, replica, sentinel = cluster["master"], cluster["replica"], cluster["sentinels"][0]
    worker = worker_process(settings, "sentinel")
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        # 1. a failover the Sentinels are asked for, while jobs run
        first = [submit(api, {**SMALL, "seed": s})["id"] for s in range(8)]
        wait_for(lambda: any(api.get(f"/v1/jobs/{i}").json()["state"] == "running" for i in first), 120,
                 "the worker to start a job")
        assert sentinel.client().execute_command("SENTINEL", "FAILOVER", MASTER)
        wait_for(lambda: _failed_over(cluster, replica), 30, "the replica to become the master", every_s=0.1)
        # the old master takes writes until the Sentinels make it a replica (which drops its clients): a
        # submission is durable once that is done
        wait_for(lambda: master.client().info("replication").get("master_link_status") == "up", 30,
                 "the old master to follow the new one")
        after_switch = submit(api, {**SMALL, "seed": 100})["id"]  # a submission right after the switch
        done = _check_jobs(api, settings, [*first, after_switch])
        # nothing was lost in a failover the old master took part in. The job running across the switch may be
        # delivered again (the broker's connection drops with the old master): then a second fenced attempt runs,
        # and still exactly one is committed and published (_check_jobs; the finished counter below)
        assert all(d["attempts"] <= 2 for d in done), [(d["id"], d["attempts"]) for d in done]
        assert sum(d["attempts"] for d in done) <= len(done) + 1, [(d["id"], d["attempts"]) for d in done]

        # 2. the new master dies (SIGKILL) while jobs run; the old one, now its replica, takes over
        second = [submit(api, {**SMALL, "seed": s})["id"] for s in range(200, 204)]
        wait_for(lambda: any(api.get(f"/v1/jobs/{i}").json()["state"] != "queued" for i in second), 60,
                 "the worker to start a job")
        # replication is asynchronous: a write the master took in its last moments may die with it (the
        # README's failover table). The jobs under test are the ones submitted before the kill, so the kill
        # waits until the replica has them (WAIT); what the worker writes from here on may still be lost
        assert replica.client().execute_command("WAIT", 1, 5000) == 1
        replica.kill()
        wait_for(lambda: _failed_over(cluster, master), 30, "the Sentinels to promote the old master", every_s=0.1)
        last = submit(api, {**SMALL, "seed": 300})["id"]
        done = _check_jobs(api, settings, [*second, last])

    # exactly once: each job committed once (the counters), whatever a lost write made run again
    js = JobStore.from_settings(settings)
    stats = js.r.hgetall(js.key("stats"))
    total = len(first) + 1 + len(second) + 1
    assert int(stats.get("finished|succeeded|sample", 0)) == total, stats
    assert not js.dead_letters()
    assert worker.proc.poll() is None, worker.text()[-3000:]
