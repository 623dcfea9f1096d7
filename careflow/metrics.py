"""Prometheus metrics of careflow's processes (names and labels carry no patient data)."""

from __future__ import annotations

from prometheus_client import start_http_server

from careflow.settings import Settings


def serve_worker_metrics(settings: Settings) -> bool:
    """The worker's own metrics endpoint (also its container health probe); False when not configured."""
    if not settings.worker_metrics_port:
        return False
    start_http_server(settings.worker_metrics_port, addr=settings.metrics_host)
    return True
