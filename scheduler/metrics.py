"""GET /metrics: Prometheus figures read from the job store at scrape time.

Workers keep their counters in Redis (jobstore `stats` and `durations:<kind>`),
so every API replica shows the same numbers and nothing is lost when a
process restarts.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from scalespace.config import LANES
from scalespace.scheduler.jobstore import DURATION_BUCKETS


class JobStoreCollector:
    def __init__(self, jobstore: Any, lanes: Iterable[str] = LANES):
        self.js, self.lanes = jobstore, list(lanes)

    def collect(self):  # noqa: ANN201 - the prometheus_client protocol
        snap = self.js.snapshot(self.lanes)
        depth = GaugeMetricFamily("scalespace_queue_depth", "Jobs queued per lane", labels=["lane"])
        age = GaugeMetricFamily("scalespace_queue_oldest_age_seconds", "Age of the oldest queued job per lane",
                                labels=["lane"])
        for lane in self.lanes:
            depth.add_metric([lane], snap["depth"][lane])
            age.add_metric([lane], snap["oldest_age_s"][lane])
        yield depth
        yield age
        yield GaugeMetricFamily("scalespace_jobs_running", "Jobs running now", value=snap["running"])
        yield GaugeMetricFamily("scalespace_dead_letter_jobs", "Jobs in the dead-letter list", value=snap["dead_letters"])
        submitted = CounterMetricFamily("scalespace_jobs_submitted", "Jobs submitted", labels=["kind"])
        finished = CounterMetricFamily("scalespace_jobs_finished", "Jobs that reached a final state",
                                       labels=["state", "kind"])
        stats = snap["stats"]
        for key, value in sorted(stats.items()):
            parts = key.split("|")
            if parts[0] == "submitted" and len(parts) == 2:
                submitted.add_metric([parts[1]], float(value))
            elif parts[0] == "finished" and len(parts) == 3:
                finished.add_metric([parts[1], parts[2]], float(value))
        yield submitted
        yield finished
        yield CounterMetricFamily("scalespace_job_retries", "Retries after transient errors and by request",
                                  value=float(stats.get("retries", 0)))
        yield CounterMetricFamily("scalespace_job_redeliveries", "Jobs handed to another worker after one was lost",
                                  value=float(stats.get("redeliveries", 0)))
        yield CounterMetricFamily("scalespace_job_resent", "Queued jobs sent again after waiting longer than "
                                  "SCALESPACE_VISIBILITY_TIMEOUT_S (their message may have been lost)",
                                  value=float(stats.get("resent", 0)))
        hist = HistogramMetricFamily("scalespace_job_duration_seconds", "Run time of succeeded jobs", labels=["kind"])
        for kind, h in sorted(snap["durations"].items()):
            if not h:
                continue
            cumulative, buckets = 0, []
            for b in DURATION_BUCKETS:
                cumulative += int(h.get(f"le:{b}", 0))
                buckets.append((str(float(b)), cumulative))
            buckets.append(("+Inf", int(h.get("count", 0))))
            hist.add_metric([kind], buckets, float(h.get("sum", 0.0)))
        yield hist
        sps = GaugeMetricFamily("scalespace_steps_per_second", "Reverse steps per second of running jobs",
                                labels=["kind"])
        for kind, value in sorted(snap["steps_per_second"].items()):
            sps.add_metric([kind], value)
        yield sps
        yield GaugeMetricFamily("scalespace_workers", "Live workers", value=len(self.js.workers()))


class ApiMetrics:
    """Figures only the API knows (how long admission takes). When `scalespace api` serves with several
    processes (SCALESPACE_API_WORKERS) it sets PROMETHEUS_MULTIPROC_DIR for them: each process writes its
    figures there and every scrape, whichever process answers it, adds up all of them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.submit_seconds = Histogram("scalespace_api_submit_seconds", "Time to admit a job (POST /v1/jobs)",
                                        registry=self.registry,
                                        buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))

    def render(self, jobstore: Any) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(JobStoreCollector(jobstore))
        own = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the API's processes' figures, added up
            own = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(own)
        return generate_latest(registry) + generate_latest(own)
