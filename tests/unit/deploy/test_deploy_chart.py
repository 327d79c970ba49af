"""The Helm chart lints, renders valid Kubernetes objects in every scenario, and refuses wrong values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy_helpers import CHART, NAMESPACE, RELEASE, SCENARIOS, find_tool, helm_template, run

#: kinds from CRDs (KEDA, Prometheus Operator) that kubernetes-validate has no schema for;
#: tests/unit/deploy/test_deploy_scaling.py checks them field by field
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
#: the oldest Kubernetes the chart supports (Chart.yaml kubeVersion: CronJob timeZone) and the newest known
KUBE_VERSIONS = ("1.27.0", "1.37.0")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict(helm: str, scenario: str) -> None:
    out = run([helm, "lint", "--strict", ".", *(f for v in SCENARIOS[scenario] for f in ("-f", v))])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_manifests_validate_strictly(scenario: str, render, tmp_path: Path) -> None:
    rendered = render(scenario)
    manifest = tmp_path / f"{scenario}.yaml"
    manifest.write_text(rendered.text)
    validate = find_tool("kubernetes-validate")
    for version in KUBE_VERSIONS:
        out = run([validate, "--strict", "-k", version, str(manifest)], timeout=120)
        assert out.returncode == 0, f"{scenario} against {version}:\n{out.stdout}{out.stderr}"
        passed = set(re.findall(r"passed for resource (\S+)/(\S+) against", out.stdout))
        skipped = set(re.findall(r"Couldn't find schema for kind (\S+) ", out.stdout + out.stderr))
        # every object was validated, except those of CRD kinds (checked elsewhere)
        core = {(d["kind"].lower(), d["metadata"]["name"]) for d in rendered.docs if d["kind"] not in CRD_KINDS}
        assert passed == core
        assert skipped <= CRD_KINDS, f"no schema for {skipped - CRD_KINDS}"


def test_scenarios_cover_what_they_claim(render) -> None:
    assert {"Deployment", "Service", "CronJob", "PodDisruptionBudget"} <= {d["kind"] for d in render().docs}
    assert not {"ScaledObject", "ServiceMonitor"} & {d["kind"] for d in render().docs}
    assert {"ScaledObject", "ServiceMonitor"} <= {d["kind"] for d in render("keda-monitoring").docs}
    gpu_off = render("gpu-disabled").get("Deployment", "worker")
    assert "nvidia.com/gpu" not in str(gpu_off["spec"]["template"]["spec"])
    external = render("external-redis")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in external.of_kind("Deployment")} == {"api", "worker"}


@pytest.mark.parametrize(
    ("flags", "where"),
    [
        (["--set-string", "api.replicas=2"], "/api/replicas"),
        (["--set", "worker.replicas=two"], "/worker/replicas"),
        (["--set", "worker.gpu.count=0"], "/worker/gpu/count"),
        (["--set", "config.max_nn=5"], "/config"),
        (["--set", "s3.bucket=Bad_Bucket"], "/s3/bucket"),
        (["--set", "podSecurityContext.runAsNonRoot=false"], "/podSecurityContext/runAsNonRoot"),
        (["--set", "keda.redis.address=redis://r:6379"], "/keda/redis/address"),
        (["--set", "worker.shutdownTimeoutSeconds=-1"], "/worker/shutdownTimeoutSeconds"),
    ],
)
def test_schema_rejects_wrong_values(helm: str, flags: list[str], where: str) -> None:
    out = helm_template(helm, [], flags)
    assert out.returncode != 0, f"{flags} was accepted"
    assert "schema" in out.stderr and where in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "redis.bundled.enabled=false"], "redis.external.url"),
        (["--set", "s3.bundled.enabled=false"], "s3.endpoint"),
        (["--set", "sweep.name=weekly"], 'no sweep "weekly"'),
        (["--set", "worker.heartbeatMaxAgeSeconds=15"], "heartbeatMaxAgeSeconds"),
        (["--set", "keda.enabled=true", "--set", "redis.bundled.enabled=false",
          "--set", "redis.external.url=redis://r:6379/0"], "keda.redis.address"),
    ],
)
def test_incomplete_values_fail_with_the_value_to_set(helm: str, flags: list[str], message: str) -> None:
    out = helm_template(helm, [], flags)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_notes_tell_how_to_submit_a_first_job(helm: str) -> None:
    out = run([helm, "install", RELEASE, ".", "--namespace", NAMESPACE, "--dry-run=client"])
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "POST" in notes and "/v1/jobs" in notes and "Authorization: Bearer" in notes
    # the body it shows is one the API accepts
    from scalespace.scheduler.api_models import JobRequest

    body = re.search(r"-d '(\{.*\})'", notes).group(1)
    request = JobRequest.model_validate_json(body)
    assert request.spec.kind == "sample" and request.lane == "interactive"
    assert f"svc/{RELEASE}-scalespace-api" in notes
    assert f"secret -n {NAMESPACE} {RELEASE}-scalespace-api-token" in notes


def test_chart_files_present() -> None:
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt", ".helmignore"):
        assert (CHART / name).is_file(), name
