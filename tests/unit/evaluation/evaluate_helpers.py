"""Helpers of the evaluation tests (a module of its own: every test folder has a `conftest`)."""

from __future__ import annotations


def fast_spec(process: str, **over) -> dict:
    """A full evaluation (every part) at the smallest sizes that still decide every check."""
    spec = {
        "kind": "evaluate", "process": process, "data": "digits", "n": 64, "eval_steps": 8,
        "n_invariance": 32, "invariance_steps": 8, "n_reverse": 48, "reverse_steps": 25,
        "robustness": {"n": 8, "steps": 4, "seeds": [0, 1, 2], "step_counts": [2, 4], "n_boot": 10, "eps": [0.01, 1.0]},
        "density_cells": 400, "device": "cpu",
    }
    spec.update(over)
    return spec
