"""The chart gives each component exactly the SCALESPACE_ settings it reads, named as the settings class names them.

The expected names are derived from scalespace.config.Settings at test time: a
setting added to the class and not to the chart (or the reverse) fails here,
naming it. Each component gets every setting except the ones listed below,
each with the reason it does not apply there (README.md, "Deploy on Kubernetes", has the table).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from deploy_helpers import CHART, ROOT, SCENARIOS, container, env_names, env_values
from scalespace.config import Settings

#: settings a component does not get, and why
NOT_FOR: dict[str, dict[str, str]] = {
    "api": {
        "results_dir": "the chart always stores results in S3",
        "api_url": "for clients that call the API, not the API itself",
        "nightly_sweeps": "Celery beat only; the chart schedules sweeps with a CronJob",
        "nightly_cron": "Celery beat only; the chart schedules sweeps with a CronJob",
        "sweeps_file": "read by `sweep run`, not by the API",
        "worker_lanes": "which queues a worker consumes",
        "retry_backoff_s": "the worker retries jobs",
        "retry_backoff_max_s": "the worker retries jobs",
        "outage_tolerance_s": "the worker waits out outages",
        "task_events": "the worker sends task events",
        "worker_nice": "the worker's CPU priority",
        "heartbeat_file": "the worker's liveness file",
        "worker_shutdown_timeout_s": "the worker's soft shutdown",
        "device": "the API runs no job",
        "deterministic": "the API runs no job",
        "triton_cache_dir": "the API runs no kernel",
    },
    "worker": {
        "results_dir": "the chart always stores results in S3",
        "api_url": "the worker does not call the API",
        "api_token": "the worker serves no HTTP",
        "api_host": "the worker serves no HTTP",
        "api_port": "the worker serves no HTTP",
        "api_workers": "the worker serves no HTTP",
        "max_body_bytes": "the worker serves no HTTP",
        "retry_after_s": "the worker serves no HTTP",
        "nightly_sweeps": "Celery beat only; the chart schedules sweeps with a CronJob",
        "nightly_cron": "Celery beat only; the chart schedules sweeps with a CronJob",
        "sweeps_file": "only Celery beat's nightly task would read it there",
    },
    "sweep": {
        "results_dir": "the chart always stores results in S3",
        "api_url": "`sweep run` submits through the job store, not over HTTP",
        "api_token": "`sweep run` submits through the job store, not over HTTP",
        "api_host": "serves no HTTP",
        "api_port": "serves no HTTP",
        "api_workers": "serves no HTTP",
        "max_body_bytes": "serves no HTTP",
        "retry_after_s": "serves no HTTP",
        "nightly_sweeps": "Celery beat only",
        "nightly_cron": "Celery beat only",
        "worker_lanes": "runs no job",
        "retry_backoff_s": "runs no job",
        "retry_backoff_max_s": "runs no job",
        "outage_tolerance_s": "runs no job",
        "task_events": "runs no job",
        "worker_nice": "runs no job",
        "heartbeat_file": "runs no job",
        "worker_shutdown_timeout_s": "runs no job",
        "device": "runs no job",
        "deterministic": "runs no job",
        "triton_cache_dir": "runs no job",
    },
}
KIND = {"api": "Deployment", "worker": "Deployment", "sweep": "CronJob"}


def env_name(field: str) -> str:
    """The environment variable that sets a field (its alias when it has one)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
    return alias or f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def expected(component: str) -> set[str]:
    return {env_name(f) for f in Settings.model_fields if f not in NOT_FOR[component]}


@pytest.mark.parametrize("component", sorted(NOT_FOR))
def test_exclusions_name_real_settings(component: str) -> None:
    stale = set(NOT_FOR[component]) - set(Settings.model_fields)
    assert not stale, f"NOT_FOR[{component!r}] names settings that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("component", sorted(NOT_FOR))
def test_component_env_matches_the_settings_class(component: str, scenario: str, render) -> None:
    obj = render(scenario).get(KIND[component], component)
    names = env_names(obj)
    assert len(names) == len(set(names)), f"{component}: a setting is set twice: {names}"
    got, want = set(names), expected(component)
    assert got == want, (
        f"{component} ({scenario}): the chart sets {sorted(got - want)} that the settings class lacks, "
        f"and lacks {sorted(want - got)}: add them to values.yaml/_helpers.tpl, or to NOT_FOR with the reason"
    )


@pytest.mark.parametrize("component", sorted(NOT_FOR))
def test_rendered_env_is_valid_for_the_settings_class(component: str, render, monkeypatch) -> None:
    """The literal values parse (an int is not rendered as 1.048576e+06); secrets get stand-ins."""
    obj = render().get(KIND[component], component)
    for name in list(os.environ):
        if name.startswith("SCALESPACE_"):
            monkeypatch.delenv(name)
    for name, value in env_values(obj).items():
        if name.startswith("SCALESPACE_"):
            monkeypatch.setenv(name, value if isinstance(value, str) else "redis://stand-in:6379/0")
    settings = Settings()
    assert settings.s3_endpoint == f"http://{obj['metadata']['name'].rsplit('-', 1)[0]}-s3:8333"
    assert settings.lanes() == {"interactive": 100, "batch": 1000, "nightly": 10000}
    if component == "worker":
        assert settings.device == "cuda"
        assert settings.triton_cache_dir == "/var/cache/triton"


def test_chart_defaults_are_the_code_defaults() -> None:
    """values.yaml's config sections repeat the settings class's defaults, so the two cannot drift."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    sections = {"config": values["config"], "api.config": values["api"]["config"],
                "worker.config": values["worker"]["config"]}
    for where, section in sections.items():
        for name, value in section.items():
            assert name in Settings.model_fields, f"{where}.{name} is not a setting"
            default = Settings.model_fields[name].default
            assert type(default)(value) == default, f"{where}.{name}: chart {value!r}, code {default!r}"
    assert values["s3"]["createBucket"] == Settings.model_fields["s3_create_bucket"].default
    assert values["worker"]["shutdownTimeoutSeconds"] == Settings.model_fields["worker_shutdown_timeout_s"].default


def test_default_sweep_definitions_are_valid_sweeps(render, tmp_path: Path) -> None:
    """The sweeps file the CronJob mounts holds sweeps the planner accepts, the named one included."""
    from scalespace.scheduler.sweeps import load_sweeps
    from scalespace.jobs.specs import parse_spec
    from scalespace.jobs.sweep import plan_sweep

    for scenario in ("default", "external-redis"):
        rendered = render(scenario)
        configmap = rendered.get("ConfigMap", "sweep")
        cron = rendered.get("CronJob", "sweep")
        path = env_values(cron)["SCALESPACE_SWEEPS_FILE"]
        mount = next(m for m in container(cron)["volumeMounts"] if m["name"] == "sweeps")
        assert path.rsplit("/", 1) == [mount["mountPath"], *configmap["data"]]
        sweeps_file = tmp_path / f"{scenario}.yaml"
        sweeps_file.write_text(configmap["data"]["sweeps.yaml"])
        sweeps = load_sweeps(str(sweeps_file))
        assert container(cron)["args"][:2] == ["sweep", "run"] and container(cron)["args"][2] in sweeps
        for spec in sweeps.values():
            assert len(plan_sweep(parse_spec(spec))) >= len(spec["processes"])


def test_compose_sets_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    all_names = {env_name(f) for f in Settings.model_fields}
    for service in ("api", "worker"):
        env = compose["services"][service]["environment"]
        names = {k for k in env if k.startswith("SCALESPACE_")}
        assert names <= all_names, f"compose {service}: {sorted(names - all_names)} are not settings"
        assert {"SCALESPACE_REDIS_URL", "SCALESPACE_S3_ENDPOINT", "SCALESPACE_S3_BUCKET"} <= names
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    assert "SCALESPACE_API_TOKEN" in compose["services"]["api"]["environment"]
    assert "SCALESPACE_API_TOKEN" not in compose["services"]["worker"]["environment"]
