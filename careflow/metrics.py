"""Prometheus metrics of careflow's processes. Labels are bounded sets from careflow's own vocabulary
(route templates, message types, steps, codes): never an id, a CPR number or a name.

- API (`GET /metrics`): HTTP requests, inbound messages by type and outcome, acknowledgements received
  by code, and, read from the read model at scrape time, open pathways by pathway/step/status,
  escalations, deadline breaches, resends and the relay's backlog.
- Worker (`CAREFLOW_WORKER_METRICS_PORT`): careflow's activities by name and outcome, with durations;
  the Temporal SDK's own runtime metrics are served by the SDK (`CAREFLOW_TEMPORAL_METRICS_PORT`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from careflow.health import relay_backlog
from careflow.settings import Settings
from messaging.model import MessageKind
from store.models import Escalation, Flow, FlowStatus, OutboundMessage

KNOWN_MESSAGE_TYPES = frozenset(kind.value for kind in MessageKind)
# Escalation reasons are the workflow's own sentences; this one is a missed deadline.
DEADLINE_REASON_SUFFIX = "by its deadline"
# The relay leaves the API this long to deliver what it just stored (workers/relay.py GRACE).
RELAY_GRACE = timedelta(seconds=3)


def message_type_label(event_code: str | None) -> str:
    """An event code as a label: careflow's known types only, anything a partner invents is "unknown"."""
    return event_code if event_code in KNOWN_MESSAGE_TYPES else "unknown"


class ApiMetrics:
    """The API process's metrics, in a registry of its own (one per app, so tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "careflow_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status_code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "careflow_http_request_duration_seconds", "Time to answer an HTTP request, by route "
                "template.", ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.inbound = Counter(
            "careflow_inbound_messages",
            "Messages partners posted, by message type and outcome (accepted, rejected, uncorrelated, duplicate).",
            ["message_type", "outcome"],
            registry=self.registry,
        )
        self.acknowledgements = Counter(
            "careflow_acknowledgements_received",
            "Acknowledgements partners sent for careflow's messages, by response code.",
            ["code"],
            registry=self.registry,
        )
        self._read_model: ReadModelCollector | None = None

    def watch_read_model(self, engine: Engine, *, cache_seconds: float = 5.0) -> None:
        """Add the read-model metrics (the engine exists once the app's lifespan has started)."""
        if self._read_model is not None:
            self.registry.unregister(self._read_model)
        self._read_model = ReadModelCollector(engine, cache_seconds=cache_seconds)
        self.registry.register(self._read_model)

    def observe_request(self, method: str, route: str, status_code: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status_code)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_inbound(
        self, event_code: str, delivery_status: str, response_code: str | None, *, duplicate: bool
    ) -> None:
        """One message posted by a partner, as stored (or found stored, for a duplicate)."""
        outcome = (
            "duplicate"
            if duplicate
            else {"rejected": "rejected", "undeliverable": "uncorrelated"}.get(delivery_status, "accepted")
        )
        message_type = message_type_label(event_code)
        self.inbound.labels(message_type, outcome).inc()
        if (
            not duplicate
            and message_type == MessageKind.ACKNOWLEDGEMENT.value
            and response_code in ("ok", "transient-error", "fatal-error")
        ):
            self.acknowledgements.labels(response_code).inc()


class ReadModelCollector(Collector):
    """Metrics read from the read model at scrape time: the same on every API replica (aggregate with
    `max`, not `sum`), true totals across restarts. Cached briefly so several scrapers cost one query."""

    def __init__(self, engine: Engine, *, cache_seconds: float = 5.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list[Any]] | None = None

    def describe(self) -> list[Any]:
        return []  # collected from the database only at scrape time, not at registration

    def collect(self) -> Iterator[Any]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.cache_seconds:
            self._cached = (now, self._families())
        yield from self._cached[1]

    def _families(self) -> list[Any]:
        open_pathways = GaugeMetricFamily(
            "careflow_pathways_open",
            "Pathways not yet ended, by pathway, current step and status (active or escalated).",
            labels=["pathway", "step", "status"],
        )
        escalations = CounterMetricFamily(
            "careflow_escalations", "Escalations ever opened, by pathway and step.", labels=["pathway", "step"]
        )
        escalations_open = GaugeMetricFamily(
            "careflow_escalations_open",
            "Escalations waiting for a coordinator, by pathway and step.",
            labels=["pathway", "step"],
        )
        breaches = CounterMetricFamily(
            "careflow_deadline_breaches",
            "Reply deadlines that passed without the reply, by pathway and step.",
            labels=["pathway", "step"],
        )
        resends = CounterMetricFamily(
            "careflow_resends",
            "Messages sent again (same MessageHeader.id, new Bundle.id), by pathway and step.",
            labels=["pathway", "step"],
        )
        backlog = GaugeMetricFamily(
            "careflow_relay_backlog_messages",
            "Stored inbound messages not yet delivered to their pathway after the relay's grace period.",
        )
        with Session(self.engine) as session:
            for pathway, step, status, n in session.exec(
                select(Flow.pathway, Flow.step, Flow.status, func.count())
                .where(col(Flow.status).in_([FlowStatus.ACTIVE, FlowStatus.ESCALATED]))
                .group_by(Flow.pathway, Flow.step, Flow.status)
            ).all():
                open_pathways.add_metric([pathway, step, status], n)
            opened = (
                select(Flow.pathway, Escalation.step, func.count())
                .join(Flow, col(Flow.id) == col(Escalation.flow_id))
                .group_by(Flow.pathway, Escalation.step)
            )
            for pathway, step, n in session.exec(opened).all():
                escalations.add_metric([pathway, step], n)
            for pathway, step, n in session.exec(opened.where(col(Escalation.resolved_at).is_(None))).all():
                escalations_open.add_metric([pathway, step], n)
            for pathway, step, n in session.exec(
                opened.where(col(Escalation.reason).endswith(DEADLINE_REASON_SUFFIX))
            ).all():
                breaches.add_metric([pathway, step], n)
            resent = (
                select(Flow.pathway, OutboundMessage.step, func.count())
                .join(Flow, col(Flow.id) == col(OutboundMessage.flow_id))
                .where(OutboundMessage.attempt > 0)
            )
            for pathway, step, n in session.exec(resent.group_by(Flow.pathway, OutboundMessage.step)).all():
                resends.add_metric([pathway, step], n)
        backlog.add_metric([], relay_backlog(self.engine, RELAY_GRACE))
        return [open_pathways, escalations, escalations_open, breaches, resends, backlog]


class WorkerMetrics:
    """careflow's metrics in a worker process: its activities, by name and outcome."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.activities = Counter(
            "careflow_activity_executions",
            "Activity attempts, by activity and outcome (completed, retried, failed).",
            ["activity", "outcome"],
            registry=self.registry,
        )
        self.activity_seconds = Histogram(
            "careflow_activity_duration_seconds", "Time an activity attempt took, by "
                "activity.", ["activity"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip

    def interceptor(self) -> Interceptor:
        return _ActivityMetricsInterceptor(self)

    def serve(self, settings: Settings) -> bool:
        """Serve on the configured port (also the worker container's health probe); False when not configured."""
        if not settings.worker_metrics_port:
            return False
        start_http_server(settings.worker_metrics_port, addr=settings.metrics_host, registry=self.registry)
        return True


class _ActivityMetricsInterceptor(Interceptor):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityMetrics(next, self.metrics)


class _ActivityMetrics(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: WorkerMetrics) -> None:
        super().__init__(next)
        self.metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
            return result
        except ApplicationError as err:
            outcome = "failed" if err.non_retryable else "retried"
            raise
        except BaseException:
            outcome = "retried"  # network trouble, 5xx, cancellation: Temporal tries again
            raise
        finally:
            self.metrics.activities.labels(name, outcome).inc()
            self.metrics.activity_seconds.labels(name).observe(time.perf_counter() - started)
