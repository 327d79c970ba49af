"""The chart with Redis behind Sentinels (ci/redis-sentinel-values.yaml): the settings each component gets,
the passwords from the existing Secret, no bundled Redis, KEDA's redis-sentinel trigger, the refusals, and the
worker's readiness probe against a real master found through a real Sentinel."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_helpers import CHART, container, env_names, env_values, helm_template
from scalespace.config import Settings
from test_deploy_settings import KIND, NOT_FOR, expected

SENTINEL_VALUES = ["-f", "ci/redis-sentinel-values.yaml"]
VALUES = yaml.safe_load((CHART / "ci" / "redis-sentinel-values.yaml").read_text())["redis"]["sentinel"]


@pytest.fixture
def sentinel_render(render) -> Any:
    return render("default", SENTINEL_VALUES)


@pytest.mark.parametrize("component", sorted(NOT_FOR))
def test_each_component_gets_the_sentinel_settings(component: str, sentinel_render, monkeypatch) -> None:
    obj = sentinel_render.get(KIND[component], component)
    names = env_names(obj)
    assert len(names) == len(set(names)) and set(names) == expected(component)
    env = env_values(obj)
    assert env["SCALESPACE_REDIS_SENTINELS"] == ",".join(VALUES["hosts"])
    assert env["SCALESPACE_REDIS_SENTINEL_MASTER"] == VALUES["masterName"]
    assert env["SCALESPACE_REDIS_DB"] == str(VALUES["db"]) and env["SCALESPACE_REDIS_URL"] == ""
    for name, key in (("SCALESPACE_REDIS_PASSWORD", VALUES["passwordKey"]),
                      ("SCALESPACE_REDIS_SENTINEL_PASSWORD", VALUES["sentinelPasswordKey"])):
        assert env[name] == {"secretKeyRef": {"name": VALUES["existingSecret"], "key": key, "optional": True}}
    # what the pod's settings make of it (secrets: stand-ins)
    for name in list(os.environ):
        if name.startswith("SCALESPACE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("SCALESPACE_"):
            monkeypatch.setenv(name, value if isinstance(value, str) else f"stand-in-{name.lower()}")
    settings = Settings()
    assert settings.sentinel_hosts() == [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in VALUES["hosts"]]
    assert settings.redis_password == "stand-in-scalespace_redis_password" and settings.redis_db == VALUES["db"]


def test_no_bundled_redis_with_sentinels(sentinel_render) -> None:
    components = {d["metadata"].get("labels", {}).get("app.kubernetes.io/component") for d in sentinel_render.docs}
    assert "redis" not in components
    assert not [s for s in sentinel_render.of_kind("Secret") if s["metadata"]["name"].endswith("-redis")]


def test_keda_asks_the_sentinels(sentinel_render) -> None:
    scaled = sentinel_render.get("ScaledObject", "worker")
    triggers = scaled["spec"]["triggers"]
    assert [t["type"] for t in triggers] == ["redis-sentinel"] * 3
    meta = triggers[0]["metadata"]
    assert meta["addresses"] == ", ".join(VALUES["hosts"]) and meta["sentinelMaster"] == VALUES["masterName"]
    assert meta["listName"] == "scalespace.interactive" and meta["databaseIndex"] == str(VALUES["db"])
    auth = sentinel_render.get("TriggerAuthentication", "worker")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": VALUES["existingSecret"], "key": VALUES["passwordKey"]},
        {"parameter": "sentinelPassword", "name": VALUES["existingSecret"], "key": VALUES["sentinelPasswordKey"]}]


def test_sentinel_defaults_are_the_code_defaults() -> None:
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["redis"]["sentinel"]
    assert chart["hosts"] == [] and Settings.model_fields["redis_sentinels"].default == ""
    assert chart["masterName"] == Settings.model_fields["redis_sentinel_master"].default
    assert chart["db"] == Settings.model_fields["redis_db"].default


def test_sentinels_and_an_external_url_are_refused(helm) -> None:
    out = helm_template(helm, [], [*SENTINEL_VALUES, "--set", "redis.external.url=redis://r:6379/0"])
    assert out.returncode != 0 and "set redis.sentinel.hosts or redis.external, not both" in out.stderr
    bad = helm_template(helm, [], ["--set", "redis.sentinel.hosts={sentinel-0}"])
    assert bad.returncode != 0 and "/redis/sentinel/hosts/0" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe(c: dict[str, Any], env: dict[str, str]) -> int:
    command = c["readinessProbe"]["exec"]["command"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCALESPACE_")}
    return subprocess.run([sys.executable, *command[1:]], env={**clean, **env}, timeout=30,
                          capture_output=True).returncode


def test_readiness_probe_finds_the_master_through_a_sentinel(sentinel_render, tmp_path: Path) -> None:
    sentinel_bin = shutil.which("redis-sentinel")
    if sentinel_bin is None:
        pytest.skip("redis-sentinel is not installed (scripts/bootstrap.sh installs it)")
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    c = container(sentinel_render.get("Deployment", "worker"))
    master_port, sentinel_port = _free_port(), _free_port()
    env = {"SCALESPACE_REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}", "SCALESPACE_REDIS_SENTINEL_MASTER": "probe",
           "SCALESPACE_REDIS_PASSWORD": "master-secret", "SCALESPACE_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
           "SCALESPACE_REDIS_DB": "3", "SCALESPACE_REDIS_URL": ""}
    assert _probe(c, env) != 0, "no Sentinel must fail"
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\nrequirepass sentinel-secret\n"
                    f"sentinel monitor probe 127.0.0.1 {master_port} 1\nsentinel auth-pass probe master-secret\n")
    procs = [subprocess.Popen([server, "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                               "--requirepass", "master-secret", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sentinel_bin, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 15
        while _probe(c, env) != 0:
            assert time.time() < deadline, "the probe never found the master through the Sentinel"
            time.sleep(0.2)
        assert _probe(c, {**env, "SCALESPACE_REDIS_PASSWORD": "wrong"}) != 0
        assert _probe(c, {**env, "SCALESPACE_REDIS_SENTINEL_MASTER": "unknown"}) != 0
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
