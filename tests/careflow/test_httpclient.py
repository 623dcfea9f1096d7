"""careflow's outbound client: at most `in_flight` requests per partner endpoint, a slow partner
holds up only its own messages, waiting for a permit times out like the pool, and every permit
comes back (after a response, an error or a timeout). Against real servers on loopback."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from careflow.httpclient import bounded_client
from tests.conftest import LoopbackServer


class Partner:
    """A partner endpoint that counts the requests it is serving at once and answers when told."""

    def __init__(self) -> None:
        self.serving = 0
        self.most = 0
        self.released = asyncio.Event()
        self.released.set()

    async def post(self, request: Request) -> PlainTextResponse:
        self.serving += 1
        self.most = max(self.most, self.serving)
        try:
            await request.body()
            await self.released.wait()
            return PlainTextResponse("ok", status_code=int(request.query_params.get("status", "200")))
        finally:
            self.serving -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.post, methods=["POST"])])


async def test_at_most_in_flight_per_partner_and_all_delivered() -> None:
    partner = Partner()
    async with LoopbackServer(partner.app()) as server, bounded_client(10, in_flight=3) as http:
        partner.released.clear()
        try:
            posts = [asyncio.create_task(http.post(server.url + "/", content=b"x")) for _ in range(12)]
            while partner.serving < 3:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # time for a fourth to get in, if the bound let it
            assert partner.serving == 3
        finally:
            partner.released.set()
        answers = await asyncio.gather(*posts)
    assert [a.status_code for a in answers] == [200] * 12
    assert partner.most == 3


async def test_a_slow_partner_does_not_hold_up_another() -> None:
    slow, quick = Partner(), Partner()
    async with (
        LoopbackServer(slow.app()) as slow_server,
        LoopbackServer(quick.app()) as quick_server,
        bounded_client(10, in_flight=2) as http,
    ):
        slow.released.clear()
        try:
            stuck = [asyncio.create_task(http.post(slow_server.url + "/", content=b"x")) for _ in range(4)]
            while slow.serving < 2:
                await asyncio.sleep(0.01)
            answer = await asyncio.wait_for(http.post(quick_server.url + "/", content=b"x"), timeout=5)
            assert answer.status_code == 200
            assert slow.serving == 2  # the other two still wait for the slow partner's permits
        finally:
            slow.released.set()
        assert [a.status_code for a in await asyncio.gather(*stuck)] == [200] * 4


async def test_waiting_for_a_permit_times_out_as_the_pool_would_and_permits_come_back() -> None:
    partner = Partner()
    async with LoopbackServer(partner.app()) as server, bounded_client(10, in_flight=1) as http:
        partner.released.clear()
        try:
            first = asyncio.create_task(http.post(server.url + "/", content=b"x", timeout=httpx.Timeout(10, read=1)))
            while partner.serving < 1:
                await asyncio.sleep(0.01)
            with pytest.raises(httpx.PoolTimeout):
                await http.post(server.url + "/", content=b"x", timeout=httpx.Timeout(10, pool=0.2))
            with pytest.raises(httpx.ReadTimeout):  # the first one's read times out: its permit comes back
                await first
        finally:
            partner.released.set()  # the server waits for its handlers when it stops
        # Answers of every kind give their permit back: with one permit, each of these would hang otherwise.
        for status in (200, 404, 503, 200):
            answer = await http.post(server.url + f"/?status={status}", content=b"x")
            assert answer.status_code == status
    assert partner.most == 1


async def test_a_refused_connection_gives_its_permit_back() -> None:
    async with bounded_client(2, in_flight=1) as http:
        for _ in range(3):  # one permit: the second try would wait, and time out, if the first kept it
            with pytest.raises(httpx.ConnectError):
                await http.post("http://127.0.0.1:9/", content=b"x")
