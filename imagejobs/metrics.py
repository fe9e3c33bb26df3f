"""Prometheus metrics.

Queue figures are read from the database at scrape time, so every web
process reports the same truth whatever process did the work. Socket
figures are this process's own.
"""

from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .models import Circuit, ImageJob, JobTransition, Status
from .overview import status_counts, worker_views

BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

open_websockets = Gauge("mami_open_websockets", "WebSockets open in this process")
fragments_sent = Counter("mami_fragments_sent", "Card fragments pushed by this process")
storage_failures = Counter(
    "mami_storage_failures", "Pictures storage refused (full, read-only) by this process"
)


def _histogram(name: str, doc: str, start: str, end: str, where: Q) -> HistogramMetricFamily:
    """Cumulative buckets over every finished span in one query."""
    span = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    aggregates = {f"le_{b}": Count("id", filter=Q(span__lte=timedelta(seconds=b))) for b in BUCKETS}
    row = (
        ImageJob.objects.filter(where, **{f"{start}__isnull": False, f"{end}__isnull": False})
        .annotate(span=span)
        .aggregate(n=Count("id"), total=Sum("span"), **aggregates)
    )
    buckets = [(str(float(b)), row[f"le_{b}"]) for b in BUCKETS] + [("+Inf", row["n"])]
    total = row["total"].total_seconds() if row["total"] else 0.0
    metric = HistogramMetricFamily(name, doc)
    metric.add_metric([], buckets, total)
    return metric


class QueueCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        """Names only, so registering touches no database."""
        yield GaugeMetricFamily("mami_jobs", "Jobs by status", labels=["status"])
        yield GaugeMetricFamily("mami_queue_depth", "Jobs waiting in line")
        yield HistogramMetricFamily("mami_job_wait_seconds", "Time from request to start")
        yield HistogramMetricFamily("mami_job_run_seconds", "Time on the GPU")
        yield CounterMetricFamily("mami_forge_errors", "Failures by class", labels=["code"])
        yield GaugeMetricFamily("mami_worker_circuit_open", "Circuit open", labels=["worker"])
        yield GaugeMetricFamily(
            "mami_worker_heartbeat_age_seconds", "Heartbeat age", labels=["worker"]
        )
        yield GaugeMetricFamily("mami_live_workers", "Workers with a recent heartbeat")
        yield CounterMetricFamily(
            "mami_worker_channel_layer_failures", "Failed pushes", labels=["worker"]
        )

    def collect(self) -> Iterator[Metric]:
        counts = status_counts()
        jobs = GaugeMetricFamily("mami_jobs", "Jobs by status", labels=["status"])
        for status, n in counts.items():
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily(
            "mami_queue_depth", "Jobs waiting in line", value=counts[Status.QUEUED]
        )
        yield _histogram(
            "mami_job_wait_seconds",
            "Time from request to start on the GPU",
            "created_at",
            "started_at",
            Q(),
        )
        yield _histogram(
            "mami_job_run_seconds",
            "Time on the GPU of completed jobs",
            "started_at",
            "finished_at",
            Q(status=Status.COMPLETE),
        )
        errors = CounterMetricFamily(
            "mami_forge_errors", "Failed Forge calls and job failures by class", labels=["code"]
        )
        for code, n in (
            JobTransition.objects.exclude(code="").values_list("code").annotate(n=Count("id"))
        ):
            errors.add_metric([code], n)
        yield errors
        circuit = GaugeMetricFamily(
            "mami_worker_circuit_open",
            "1 while the worker's circuit breaker holds the queue",
            labels=["worker"],
        )
        heartbeat = GaugeMetricFamily(
            "mami_worker_heartbeat_age_seconds",
            "Seconds since the worker's last heartbeat",
            labels=["worker"],
        )
        layer = CounterMetricFamily(
            "mami_worker_channel_layer_failures",
            "Pushes the worker process could not hand to the channel layer",
            labels=["worker"],
        )
        live = 0
        for view in worker_views():
            circuit.add_metric([view.state.id], 1 if view.state.circuit == Circuit.OPEN else 0)
            heartbeat.add_metric([view.state.id], view.seconds_since_heartbeat)
            layer.add_metric([view.state.id], view.state.channel_layer_failures)
            live += view.alive
        yield circuit
        yield heartbeat
        yield layer
        yield GaugeMetricFamily("mami_live_workers", "Workers with a recent heartbeat", value=live)


_collector = QueueCollector()
REGISTRY.register(_collector)
