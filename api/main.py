"""The FastAPI application: `create_app()` wires settings, database, Temporal and the routers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import console
from api.console.web import declared_terms
from api.errors import install_error_handlers
from api.routes import codec, fhir, flows, health, metrics, pathways, referrals, reports, triage, vans
from api.security import BodyLimitMiddleware, CodecCORSMiddleware, DeniedAuditMiddleware, ResponseHeadersMiddleware
from careflow.codec import EncryptionCodec
from careflow.crypto import KeyRing
from careflow.heap import settle
from careflow.httpclient import bounded_client
from careflow.metrics import ApiMetrics
from careflow.settings import Settings, get_settings
from careflow.temporal import connect
from careflow.tokens import verifier_from_settings
from careflow.tracing import Tracing
from exchange.delivering import Deliverer, Handoff, Marks, deliver_and_acknowledge, send_acknowledgement
from exchange.receiving import Receiver
from messaging import load_directory
from messaging.vans import MAX_ENVELOPE_BYTES
from store.audit import chain_key
from store.db import make_engine, migrate
from workflows.registry import Pathways

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, run_migrations: bool = True, tracing: Tracing | None = None
) -> FastAPI:
    settings = settings or get_settings()
    tracing = tracing or Tracing.from_settings(settings, "careflow-api")
    settings.refuse_unsafe("api")  # before anything listens: production secrets or no start
    verifier = verifier_from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_migrations and settings.migrate_on_start:
            await asyncio.to_thread(migrate, settings.sqlalchemy_url)
        app.state.settings = settings
        app.state.verifier = verifier
        app.state.engine = make_engine(settings.sqlalchemy_url)
        app.state.metrics.watch_read_model(app.state.engine)
        app.state.audit_key = chain_key(settings.cpr_hash_key)
        app.state.key_ring = KeyRing.parse(settings.codec_keys)
        app.state.temporal_codec = EncryptionCodec(
            app.state.key_ring, strict=False
        )  # the UI's codec endpoint shows what is there
        app.state.directory = load_directory(settings)
        app.state.pathways = Pathways.load(settings.pathway_modules)
        app.state.console_terms = declared_terms(app.state.pathways)  # once: the console's words
        app.state.receiver = Receiver(app.state.key_ring, settings, app.state.directory, app.state.pathways)
        # Lazy: the API starts, and stores inbound messages, even while Temporal is down.
        app.state.temporal = await connect(settings, lazy=True, interceptors=tracing.temporal_interceptors())
        app.state.http = tracing.instrument_http(
            bounded_client(settings.send_timeout.total_seconds(), in_flight=settings.http_in_flight)
        )
        deliverer = Deliverer(
            app.state.engine, app.state.temporal, app.state.pathways, app.state.key_ring, settings.task_queue
        )
        tasks: set[asyncio.Task] = set()
        marks = Marks(app.state.engine)

        async def _deliver_and_acknowledge(stored: int | Handoff) -> None:
            if isinstance(stored, Handoff):  # just stored by this process: nothing to read again
                await deliver_and_acknowledge(deliverer, app.state.http, app.state.directory, stored, marks)
                return
            await deliverer.deliver(stored)
            await send_acknowledgement(
                app.state.engine, app.state.http, app.state.directory, app.state.key_ring, stored
            )

        def after_store(stored: int | Handoff) -> None:
            """Deliver and acknowledge right away; whatever fails here the relay picks up."""
            task = asyncio.create_task(_deliver_and_acknowledge(stored))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        app.state.after_store = after_store
        settle("api", settings)
        try:
            yield
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            await marks.close()
            await app.state.http.aclose()
            app.state.engine.dispose()
            tracing.shutdown()

    app = FastAPI(
        title="careflow",
        summary="Durable care pathways over Danish health messaging (MedCom FHIR)",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Outermost last: the proxy's scheme first, then metrics and tracing (they see every answer),
    # CORS (the Temporal UI calls /codec from the browser), response headers, and body limits
    # before any route, parser or authentication.
    app.add_middleware(DeniedAuditMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        # /vans/: MedCom's own maximum; the deployment's (max_envelope_bytes) is the route's, which keeps
        # what it refuses for triage
        limits={
            "/fhir/": settings.max_message_bytes,
            "/vans/": MAX_ENVELOPE_BYTES,
            "/codec/": settings.max_codec_bytes,
        },
    )
    app.add_middleware(ResponseHeadersMiddleware)
    app.add_middleware(CodecCORSMiddleware, origins=settings.codec_cors_origins)
    app.state.metrics = ApiMetrics()
    app.add_middleware(metrics.RequestMetricsMiddleware)
    tracing.instrument_app(app)
    if settings.proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxies)
    # Outermost of all: the dev Temporal UI's codec credential out of the path before anything logs it.
    app.add_middleware(
        codec.DevUiCodecCredential, credential_sha256=settings.codec_ui_credential_sha256 if settings.is_dev else ""
    )
    for router in (
        health.router,
        metrics.router,
        pathways.router,
        referrals.router,
        flows.router,
        reports.router,
        fhir.router,
        vans.router,
        triage.router,
        codec.router,
        console.router,
    ):
        app.include_router(router)
    return app
