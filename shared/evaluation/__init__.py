"""Evaluation of a process as a scale-space of distributions.

Built on the estimators of `scalespace.stats`: the forward trajectory and its
Lyapunov sequences (forward_trajectory), the property checks
with their verdicts (check: the `Check` record and what theory expects; forward:
F1 to F4; osmosis_laws: O1 to O3; invariances: F5; reverse: R1 to R4),
robustness of the reverse process, the osmosis / vp density comparison, the
per-step statistics of a sample job's trajectory (sample_trajectory), and the
report of an `evaluate` job (plots: PNGs; report: the HTML page).

Import the submodules directly; this package imports nothing on its own.
"""
