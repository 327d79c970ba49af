"""What the rendered workloads promise: hardening, GPUs, shutdown, probes, the CronJob, references that resolve."""

from __future__ import annotations

import base64
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

from deploy_helpers import CHART, RELEASE, SCENARIOS, container, env_values, pod_spec

WORKLOAD_KINDS = ("Deployment", "CronJob")
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def workloads(rendered) -> list[dict[str, Any]]:
    return [d for d in rendered.docs if d["kind"] in WORKLOAD_KINDS]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_pod_is_hardened(scenario: str, render) -> None:
    for obj in workloads(render(scenario)):
        name = obj["metadata"]["name"]
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        sc = container(obj)["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in container(obj).get("volumeMounts", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be an emptyDir"
        for path, volume in mounts.items():
            assert volume in volumes, f"{name}: mount {path} has no volume"
            assert set(volumes[volume]) & {"emptyDir", "configMap", "persistentVolumeClaim"}, (name, path)


def test_worker_asks_for_one_gpu_by_default_and_tolerates_gpu_nodes(render) -> None:
    worker = render().get("Deployment", "worker")
    resources = container(worker)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(worker)["tolerations"]
    assert container(worker)["image"] == f"{VALUES['images']['workerGpu']['repository']}:{APP_VERSION}"
    assert env_values(worker)["SCALESPACE_DEVICE"] == "cuda"


def test_gpu_resource_name_count_and_placement_are_configurable(render) -> None:
    worker = render(extra=[
        "--set", "worker.gpu.resourceName=amd.com/gpu", "--set", "worker.gpu.count=2",
        "--set", "worker.nodeSelector.pool=gpu", "--set", "worker.tolerations[0].key=dedicated",
        "--set", "worker.tolerations[0].operator=Exists",
        "--set", "worker.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].key=gpu",
        "--set", "worker.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
    ]).get("Deployment", "worker")
    resources = container(worker)["resources"]
    assert resources["limits"]["amd.com/gpu"] == 2 and "nvidia.com/gpu" not in resources["limits"]
    spec = pod_spec(worker)
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert {t["key"] for t in spec["tolerations"]} == {"nvidia.com/gpu", "dedicated"}
    assert "nodeAffinity" in spec["affinity"]


def test_cpu_workers_without_gpu(render) -> None:
    worker = render("gpu-disabled").get("Deployment", "worker")
    assert container(worker)["image"].startswith(VALUES["images"]["workerCpu"]["repository"] + ":")
    assert "tolerations" not in pod_spec(worker)
    assert not any("gpu" in k for section in container(worker)["resources"].values() for k in section)
    assert env_values(worker)["SCALESPACE_DEVICE"] == "cpu"
    assert worker["spec"]["replicas"] == 2


@pytest.mark.parametrize("timeout", [300, 7200])
def test_grace_period_covers_the_soft_shutdown(render, timeout: int) -> None:
    worker = render(extra=["--set", f"worker.shutdownTimeoutSeconds={timeout}"]).get("Deployment", "worker")
    assert env_values(worker)["SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S"] == str(timeout)
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace == timeout + VALUES["worker"]["terminationGraceExtraSeconds"] and grace > timeout
    # one GPU per pod: a rollout never asks for a spare GPU
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_worker_paths_are_on_writable_volumes(render) -> None:
    for scenario in ("default", "external-redis"):
        worker = render(scenario).get("Deployment", "worker")
        env = env_values(worker)
        mounts = {m["mountPath"]: m["name"] for m in container(worker)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(worker)["volumes"]}
        assert os.path.dirname(env["SCALESPACE_HEARTBEAT_FILE"]) in mounts
        cache = env["SCALESPACE_TRITON_CACHE_DIR"]
        assert env["TRITON_CACHE_DIR"] == cache and cache in mounts
        kind = "persistentVolumeClaim" if scenario == "external-redis" else "emptyDir"
        assert kind in volumes[mounts[cache]]


def test_api_probes_and_ports(render) -> None:
    api = render().get("Deployment", "api")
    c = container(api)
    assert c["startupProbe"]["httpGet"]["path"] == "/v1/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    assert c["args"] == ["api", "--host", "0.0.0.0", "--port", str(port)]
    assert env_values(api)["SCALESPACE_API_PORT"] == str(port)
    service = render().get("Service", "api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_probes_are_not_celery_pings(render) -> None:
    c = container(render().get("Deployment", "worker"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "celery" not in str(c[probe]).lower(), probe
    startup = c["startupProbe"]
    # model load and kernel warm-up get minutes before the first heartbeat
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "SCALESPACE_HEARTBEAT_FILE" in c["livenessProbe"]["exec"]["command"][-1]
    assert "ping()" in c["readinessProbe"]["exec"]["command"][-1]


def _probe(c: dict[str, Any], which: str, env: dict[str, str]) -> int:
    command = c[which]["exec"]["command"]
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env={**os.environ, **env}, timeout=30,
                          capture_output=True).returncode


def test_liveness_probe_follows_the_heartbeat_file(render, tmp_path: Path) -> None:
    c = container(render().get("Deployment", "worker"))
    beat = tmp_path / "heartbeat"
    env = {"SCALESPACE_HEARTBEAT_FILE": str(beat)}
    assert _probe(c, "livenessProbe", env) != 0, "no heartbeat yet must fail"
    beat.touch()
    assert _probe(c, "livenessProbe", env) == 0
    old = time.time() - VALUES["worker"]["heartbeatMaxAgeSeconds"] - 5
    os.utime(beat, (old, old))
    assert _probe(c, "livenessProbe", env) != 0, "a stale heartbeat must fail"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readiness_probe_pings_the_broker(render, tmp_path: Path) -> None:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    c = container(render().get("Deployment", "worker"))
    port = _free_port()
    url = f"redis://:probe-secret@127.0.0.1:{port}/0"
    assert _probe(c, "readinessProbe", {"SCALESPACE_REDIS_URL": url}) != 0, "no broker must fail"
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--requirepass", "probe-secret", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while _probe(c, "readinessProbe", {"SCALESPACE_REDIS_URL": url}) != 0:
            assert time.time() < deadline, "redis-server did not come up"
            time.sleep(0.1)
        wrong = url.replace("probe-secret", "wrong")
        assert _probe(c, "readinessProbe", {"SCALESPACE_REDIS_URL": wrong}) != 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_pod_disruption_budgets_select_their_pods(render) -> None:
    rendered = render()
    for component in ("api", "worker"):
        pdb = rendered.get("PodDisruptionBudget", component)
        labels = rendered.get("Deployment", component)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert rendered.get("PodDisruptionBudget", "worker")["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("scenario", ["default", "external-redis"])
def test_sweep_cronjob(render, scenario: str) -> None:
    cron = render(scenario).get("CronJob", "sweep")
    values = VALUES["sweep"] | yaml.safe_load((CHART / SCENARIOS[scenario][0]).read_text())["sweep"] \
        if SCENARIOS[scenario] else VALUES["sweep"]
    spec = cron["spec"]
    assert spec["schedule"] == values["schedule"] and spec["timeZone"] == values["timeZone"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == VALUES["sweep"]["startingDeadlineSeconds"]
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == VALUES["sweep"]["activeDeadlineSeconds"]
    assert pod_spec(cron)["restartPolicy"] == "Never"
    assert container(cron)["args"] == ["sweep", "run", values["name"]]
    assert container(cron)["image"].startswith(VALUES["images"]["api"]["repository"] + ":")


def test_secret_references_resolve_to_rendered_secrets(render) -> None:
    """With the default values every secretKeyRef points at a Secret (and key) the chart renders."""
    for scenario in ("default", "gpu-disabled", "keda-monitoring"):
        rendered = render(scenario)
        secrets = {s["metadata"]["name"]: s["data"] for s in rendered.of_kind("Secret")}
        for obj in workloads(rendered):
            for e in container(obj).get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], {}), (obj["metadata"]["name"], e["name"])


def test_bundled_redis_url_carries_the_generated_password(render) -> None:
    rendered = render()
    secret = {k: base64.b64decode(v).decode() for k, v in
              rendered.get("Secret", "redis")["data"].items()}
    service = rendered.get("Service", "redis")
    assert len(secret["redis-password"]) >= 32
    assert secret["redis-url"] == f"redis://:{secret['redis-password']}@{service['metadata']['name']}:6379/0"
    redis = container(rendered.get("Deployment", "redis"))
    assert "--requirepass" in redis["args"] and "$(REDIS_PASSWORD)" in redis["args"]
    s3_service = rendered.get("Service", "s3")
    assert env_values(rendered.get("Deployment", "worker"))["SCALESPACE_S3_ENDPOINT"] == \
        f"http://{s3_service['metadata']['name']}:{s3_service['spec']['ports'][0]['port']}"


def test_external_services_use_the_named_secrets_and_bundle_nothing(render) -> None:
    rendered = render("external-redis")
    assert not rendered.of_kind("Secret")
    names = {d["metadata"]["name"] for d in rendered.of_kind("Deployment")}
    assert names == {f"{RELEASE}-scalespace-api", f"{RELEASE}-scalespace-worker"}
    for component, kind in (("api", "Deployment"), ("worker", "Deployment"), ("sweep", "CronJob")):
        env = env_values(rendered.get(kind, component))
        assert env["SCALESPACE_REDIS_URL"] == {"secretKeyRef": {"name": "scalespace-redis", "key": "url"}}
        assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "scalespace-s3"
        assert env["SCALESPACE_S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"
    assert env_values(rendered.get("Deployment", "api"))["SCALESPACE_API_TOKEN"] == \
        {"secretKeyRef": {"name": "scalespace-api", "key": "api-token"}}


def test_external_s3_without_a_secret_uses_the_pod_identity(render) -> None:
    rendered = render(extra=["--set", "s3.endpoint=https://s3.amazonaws.com", "--set", "s3.bundled.enabled=false",
                             "--set", "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/r"])
    env = env_values(rendered.get("Deployment", "worker"))
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    account = rendered.of_kind("ServiceAccount")[0]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}
    assert pod_spec(rendered.get("Deployment", "worker"))["serviceAccountName"] == account["metadata"]["name"]


def test_package_chart_and_compose_versions_agree() -> None:
    import tomllib

    import scalespace

    root = CHART.parents[1]
    package = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert package == scalespace.__version__ == chart["appVersion"] == chart["version"]
    compose = yaml.safe_load((root / "docker" / "compose.yaml").read_text())
    tags = {svc["image"].rsplit(":", 1)[1] for svc in compose["services"].values() if svc.get("image", "").startswith("scalespace/")}
    assert tags == {package}
