"""The relay: delivers every stored, undelivered inbound message once Temporal is reachable, in
arrival order per flow, and sends acknowledgements that could not be sent at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from sqlalchemy import Engine
from temporalio.client import Client

from careflow.crypto import KeyRing
from exchange.delivering import Deliverer, send_acknowledgement, undelivered, unsent_acknowledgements
from messaging import Directory
from workflows.registry import PATHWAYS, Pathways

log = logging.getLogger(__name__)

# Leave the API a moment to deliver what it just stored before the relay steps in ...
GRACE = timedelta(seconds=3)
# ... and longer to post its acknowledgement: the API's own post may wait for a permit to the partner
# and then for the partner (each up to CAREFLOW_SEND_TIMEOUT, 10 s by default). A relay that stepped
# in at 3 s sent acknowledgements still in flight a second time (bench_inbound at saturation: up to
# 914 for 900 replies). Senders wait 30 minutes before resending a message (MedCom), so an
# acknowledgement lost with a crashed API going out half a minute later changes nothing for them.
ACK_GRACE = timedelta(seconds=30)


async def repeat(one_pass: Callable[[], Awaitable[object]], interval: timedelta, name: str) -> None:
    """Run a pass every `interval`, for as long as the worker runs; a failed pass is retried."""
    while True:
        try:
            await one_pass()
        except Exception:  # a background loop must outlive a bad pass (database restarting, ...)
            log.exception("%s pass failed; retrying", name)
        await asyncio.sleep(interval.total_seconds())


class Relay:
    def __init__(
        self,
        engine: Engine,
        client: Client,
        http: httpx.AsyncClient,
        directory: Directory,
        key_ring: KeyRing,
        pathways: Pathways | None = None,
        task_queue: str = "careflow",
    ) -> None:
        self.engine, self.client, self.http, self.directory, self.key_ring = engine, client, http, directory, key_ring
        self.deliverer = Deliverer(engine, client, pathways or PATHWAYS, key_ring, task_queue)

    async def run_once(self, grace: timedelta = GRACE, ack_grace: timedelta = ACK_GRACE) -> int:
        """One pass; returns how many messages it delivered. It takes up messages stored more than
        `grace` ago and not yet delivered, and acknowledgements made more than `ack_grace` ago and
        not yet sent."""
        delivered = 0
        blocked_flows: set[str] = set()
        for message_id, flow_id in await asyncio.to_thread(undelivered, self.engine, grace):
            if flow_id in blocked_flows:
                continue  # keep per-flow order: nothing overtakes a message that failed
            if await self.deliverer.deliver(message_id):
                delivered += 1
            else:
                blocked_flows.add(flow_id)
        for message_id in await asyncio.to_thread(unsent_acknowledgements, self.engine, ack_grace):
            await send_acknowledgement(self.engine, self.http, self.directory, self.key_ring, message_id)
        if delivered:
            log.info("relay delivered %d stored messages", delivered)
        return delivered

    async def run(self, interval: timedelta) -> None:
        await repeat(self.run_once, interval, "relay")
