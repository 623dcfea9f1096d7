"""careflow's outbound HTTP client (to partners, and the simulator's to careflow).

httpcore 1.0.9's connection pool walks its connections once per idle connection, and again per
queued request, every time a request starts or ends (encode/httpcore#1035, open): with many
requests in flight its bookkeeping cost more CPU than the requests (benchmarks/RESULTS.md, round 4).
`bounded_client` lets at most `in_flight` requests per partner endpoint (scheme, host and port) into
the pool at once; the rest wait in front of it on a semaphore, in order. A slow partner therefore
holds up only its own messages, never another partner's. Waiting for a permit counts as waiting
for a connection: it ends in `httpx.PoolTimeout`, as the pool's own wait would, and the relay
retries what was not sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

IN_FLIGHT = 8  # requests per partner endpoint inside the pool at once (measured: 4 and 8 alike, 32 costs 15 % more CPU)


class _Permit:
    """Released once: when the response's stream is closed, or at once if the request failed."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore, self._held = semaphore, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


class _PermitStream(httpx.AsyncByteStream):
    """The pool's response stream, holding the permit until it is closed (the connection is busy
    until then)."""

    def __init__(self, stream: httpx.AsyncByteStream, permit: _Permit) -> None:
        self._stream, self._permit = stream, permit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._permit.release()


class BoundedTransport(httpx.AsyncBaseTransport):
    """At most `in_flight` requests per origin inside the wrapped transport at once."""

    def __init__(self, transport: httpx.AsyncBaseTransport, in_flight: int) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._transport, self._in_flight = transport, in_flight
        self._semaphores: dict[tuple[bytes, bytes, int | None], asyncio.Semaphore] = {}

    def _semaphore(self, url: httpx.URL) -> asyncio.Semaphore:
        origin = (url.raw_scheme, url.raw_host, url.port)
        semaphore = self._semaphores.get(origin)
        if semaphore is None:
            semaphore = self._semaphores[origin] = asyncio.Semaphore(self._in_flight)
        return semaphore

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        semaphore = self._semaphore(request.url)
        try:  # the request's own pool timeout (httpx puts its timeouts in the request's extensions)
            async with asyncio.timeout(request.extensions.get("timeout", {}).get("pool")):
                await semaphore.acquire()
        except TimeoutError as err:
            raise httpx.PoolTimeout("no connection to this partner became free in time", request=request) from err
        permit = _Permit(semaphore)
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException:
            permit.release()
            raise
        if not isinstance(response.stream, httpx.AsyncByteStream):  # pragma: no cover - httpx always streams async here
            permit.release()
            return response
        response.stream = _PermitStream(response.stream, permit)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


def bounded_client(timeout: float, *, in_flight: int = IN_FLIGHT) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with `timeout` for every phase (waiting for a permit counts as the
    pool phase), and at most `in_flight` requests per partner endpoint in its pool at once."""
    # No overall cap (the permits bound each partner); httpx's default of 20 idle connections kept.
    pool = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None, max_keepalive_connections=20))
    return httpx.AsyncClient(timeout=timeout, transport=BoundedTransport(pool, in_flight))
