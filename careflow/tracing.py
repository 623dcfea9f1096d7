"""OpenTelemetry tracing: one trace per exchange, from the API request through Temporal (the SDK's
TracingInterceptor carries the context in workflow and activity headers) to the HTTP call to the
partner, and back with the partner's acknowledgement (the partner's request carries `traceparent`).

Off by default: set CAREFLOW_OTLP_ENDPOINT (e.g. http://otel-collector:4318) to export over OTLP/HTTP.
Spans carry routes, URLs (organisation endpoints), workflow and activity types and ids: never patient
data, which only ever travels in request bodies and encrypted payloads."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from temporalio.client import Interceptor

from careflow.settings import Settings


@dataclass
class Tracing:
    """A process's tracer provider (None: tracing off, nothing instrumented, no cost)."""

    provider: TracerProvider | None = None

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Tracing:
        if not settings.otlp_endpoint:
            return cls(None)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls.with_exporter(OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces"), service)

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, service: str, *, processor: type = BatchSpanProcessor) -> Tracing:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(processor(exporter))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def temporal_interceptors(self) -> list[Interceptor]:
        """For Client.connect: the client's spans (start, signal, update) and, in a worker built on that
        client, the workflow and activity spans."""
        if self.provider is None:
            return []
        from temporalio.contrib.opentelemetry import TracingInterceptor

        return [TracingInterceptor(self.provider.get_tracer("temporalio"))]

    def instrument_app(self, app: FastAPI) -> None:
        if self.provider is not None:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(
                app, tracer_provider=self.provider, excluded_urls="healthz,readyz,metrics"
            )

    def instrument_http(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
        if self.provider is not None:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)
        return client

    def shutdown(self) -> None:
        """Flush what is buffered (at process end)."""
        if self.provider is not None:
            self.provider.shutdown()
