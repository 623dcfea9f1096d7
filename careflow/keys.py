"""Key rotation for what the database holds: every encrypted column moved to the newest codec key
(the first in CAREFLOW_CODEC_KEYS) and bound to its table, column and row."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select

from careflow.crypto import KeyRing
from store.models import ENCRYPTED_COLUMNS, sealed_as


def reencrypt(engine: Engine, key_ring: KeyRing, *, batch: int = 500) -> dict[str, int]:
    """Re-encrypt, batch by batch (each its own transaction, so it can run beside a live careflow
    and be run again after an interruption). Returns how many values moved, per table.column."""
    moved: dict[str, int] = {}
    for table, (row_key, columns) in ENCRYPTED_COLUMNS.items():
        primary = next(iter(table.__table__.primary_key.columns))  # type: ignore[attr-defined]
        last = None
        while True:
            with Session(engine) as session:
                query = select(table).order_by(primary).limit(batch)
                if last is not None:
                    query = query.where(primary > last)
                rows = session.exec(query).all()
                if not rows:
                    break
                for row in rows:
                    for column in columns:
                        stored = getattr(row, column)
                        if not stored:
                            continue
                        fresh = key_ring.reencrypt_text(stored, sealed_as(table, column, getattr(row, row_key)))
                        if fresh is not None:
                            setattr(row, column, fresh)
                            name = f"{table.__tablename__}.{column}"
                            moved[name] = moved.get(name, 0) + 1
                    session.add(row)
                last = getattr(rows[-1], primary.name)
                session.commit()
    return moved
