"""exchange/delivering.py `Marks`: the API's "delivered" and "acknowledgement sent" writes, many
messages per transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import Session, select

from exchange import delivering
from exchange.delivering import DeliveryStatus, Marks
from store.models import InboundMessage


def _store(engine, count: int) -> list[int]:  # noqa: ANN001
    with Session(engine) as session:
        rows = [
            InboundMessage(
                message_header_id=f"header-{i}",
                bundle_id=f"bundle-{i}",
                event_code="xdis91",
                sender_sor="200000000000001",
                content_type="application/fhir+json",
                body_enc="sealed",
            )
            for i in range(count)
        ]
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows]


async def test_marks_written_together_each_as_asked(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    transactions: list[int] = []
    write = delivering._mark_many

    def counting(engine, marks):  # noqa: ANN001, ANN202
        transactions.append(len(marks))
        write(engine, marks)

    monkeypatch.setattr(delivering, "_mark_many", counting)
    ids = _store(engine, 60)
    marks = Marks(engine)
    asked = {message_id: (i % 3 != 1, i % 3 != 2) for i, message_id in enumerate(ids)}  # both, ack only, delivered only
    await asyncio.gather(*(marks.mark(m, delivered, acked) for m, (delivered, acked) in asked.items()))
    await marks.close()
    assert sum(transactions) == 60 and len(transactions) < 60, transactions
    with Session(engine) as session:
        for row in session.exec(select(InboundMessage)):
            delivered, acked = asked[row.id]
            assert (row.delivery_status == DeliveryStatus.DELIVERED) is delivered
            assert (row.delivered_at is not None) is delivered
            assert (row.ack_sent_at is not None) is acked


async def test_one_mark_alone_is_written_at_once(engine) -> None:  # noqa: ANN001
    [message_id] = _store(engine, 1)
    marks = Marks(engine)
    await asyncio.wait_for(marks.mark(message_id, True, False), timeout=5)
    with Session(engine) as session:
        assert session.get(InboundMessage, message_id).delivery_status == DeliveryStatus.DELIVERED
    await marks.close()


async def test_a_failed_write_reaches_every_caller_of_its_batch(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    ids = _store(engine, 3)

    def failing(engine, marks):  # noqa: ANN001, ANN202
        raise RuntimeError("database went away")

    monkeypatch.setattr(delivering, "_mark_many", failing)
    marks = Marks(engine)
    results = await asyncio.gather(*(marks.mark(m, True, True) for m in ids), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError] * 3
    await marks.close()
