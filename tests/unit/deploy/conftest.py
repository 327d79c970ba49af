"""Fixtures for the deployment tests: the helm binary and the chart rendered once per scenario."""

from __future__ import annotations

from typing import Callable

import pytest

from deploy_helpers import SCENARIOS, Render, find_tool, helm_template, parse


@pytest.fixture(scope="session")
def helm() -> str:
    return find_tool("helm")


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., Render]:
    """render(scenario) -> Render (cached); render(extra=[...]) renders default values plus flags."""
    cache: dict[str, Render] = {}

    def _render(scenario: str = "default", extra: list[str] | None = None) -> Render:
        key = scenario + "\0" + "\0".join(extra or [])
        if key not in cache:
            out = helm_template(helm, SCENARIOS[scenario], extra)
            assert out.returncode == 0, f"helm template ({scenario}) failed:\n{out.stderr}"
            cache[key] = Render(out.stdout, parse(out.stdout))
        return cache[key]

    return _render
