"""KEDA's ScaledObject and the ServiceMonitor (CRD kinds kubernetes-validate has no schema for): fields and references."""

from __future__ import annotations

import yaml

from deploy_helpers import CHART, container, env_values
from scalespace.scheduler.queues import queue_name

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_scaled_object_targets_the_worker_on_the_lane_queues(render) -> None:
    rendered = render("keda-monitoring")
    scaled = rendered.get("ScaledObject", "worker")
    worker = rendered.get("Deployment", "worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"name": worker["metadata"]["name"]}
    # KEDA owns the replica count: the Deployment does not fight it on upgrade
    assert "replicas" not in worker["spec"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 8)
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    # the lists KEDA measures are the queues the workers consume
    lanes = env_values(worker)["SCALESPACE_WORKER_LANES"].split(",")
    assert [t["metadata"]["listName"] for t in triggers] == [queue_name(lane) for lane in VALUES["keda"]["lanes"]]
    assert set(VALUES["keda"]["lanes"]) == set(lanes)
    redis_service = rendered.get("Service", "redis")
    for t in triggers:
        assert t["metadata"]["address"] == f"{redis_service['metadata']['name']}:6379"
        assert all(isinstance(v, str) for v in t["metadata"].values()), "KEDA metadata values are strings"
        assert int(t["metadata"]["listLength"]) >= 1


def test_scale_down_is_slow_for_in_flight_jobs(render) -> None:
    scaled = render("keda-monitoring").get("ScaledObject", "worker")["spec"]
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] >= 300
    assert behavior["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": VALUES["keda"]["scaleDown"]["periodSeconds"]}]
    assert scaled["cooldownPeriod"] >= VALUES["worker"]["shutdownTimeoutSeconds"]


def test_trigger_authentication_reads_the_redis_password(render) -> None:
    rendered = render("keda-monitoring")
    auth = rendered.of_kind("TriggerAuthentication")
    assert len(auth) == 1
    ref = auth[0]["spec"]["secretTargetRef"][0]
    assert ref["parameter"] == "password"
    secret = rendered.get("Secret", "redis")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"]
    for t in rendered.get("ScaledObject", "worker")["spec"]["triggers"]:
        assert t["authenticationRef"] == {"name": auth[0]["metadata"]["name"]}


def test_keda_with_external_redis_uses_the_given_address_and_secret(render) -> None:
    rendered = render("external-redis")
    scaled = rendered.get("ScaledObject", "worker")
    assert {t["metadata"]["address"] for t in scaled["spec"]["triggers"]} == {"redis.data.svc:6379"}
    ref = rendered.of_kind("TriggerAuthentication")[0]["spec"]["secretTargetRef"][0]
    assert (ref["name"], ref["key"]) == ("scalespace-redis", "password")


def test_keda_without_a_password_has_no_authentication(render) -> None:
    rendered = render(extra=["--set", "keda.enabled=true", "--set", "redis.bundled.enabled=false",
                             "--set", "redis.external.url=redis://r.data:6379/2",
                             "--set", "keda.redis.address=r.data:6379", "--set", "keda.redis.databaseIndex=2"])
    assert not rendered.of_kind("TriggerAuthentication")
    for t in rendered.get("ScaledObject", "worker")["spec"]["triggers"]:
        assert "authenticationRef" not in t and t["metadata"]["databaseIndex"] == "2"
    assert env_values(rendered.get("Deployment", "worker"))["SCALESPACE_REDIS_URL"] == "redis://r.data:6379/2"


def test_service_monitor_scrapes_the_api_metrics_with_the_token(render) -> None:
    rendered = render("keda-monitoring")
    monitor = rendered.get("ServiceMonitor", "api")
    service = rendered.get("Service", "api")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    api_token = env_values(rendered.get("Deployment", "api"))["SCALESPACE_API_TOKEN"]["secretKeyRef"]
    assert (credentials["name"], credentials["key"]) == (api_token["name"], api_token["key"])
    assert container(rendered.get("Deployment", "api"))["ports"][0]["name"] == endpoint["port"]
