"""The audit log as a hash chain: every entry carries the keyed hash of the one before it, so an
altered, inserted or deleted entry is found by `verify_chain` (`careflow audit verify`).

Appends are serialised by the one-row `audithead` table: each flush that adds AuditEntry rows first
updates that row, which takes PostgreSQL's row lock and SQLite's write lock until the commit, so two
API processes appending at once wait for each other instead of forking the chain. Any
`session.add(AuditEntry(...))` in an `audit_session` is chained (a before_flush hook); call sites
stay as they were.
The hash is an HMAC with a key derived from CAREFLOW_CPR_HASH_KEY: rewriting the chain after an edit
needs that key, not just access to the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, event, text
from sqlmodel import Session, col, select

from store.models import AuditEntry, AuditHead

GENESIS = "0" * 64
SESSION_KEY = "audit_chain_key"  # in Session.info: the sessions that may write audit entries carry it


def chain_key(cpr_hash_key: str) -> bytes:
    return hmac.new(cpr_hash_key.encode(), b"careflow-audit-chain-v1", hashlib.sha256).digest()


def audit_session(engine: Engine, key: bytes, **options: object) -> Session:
    """A session whose audit entries are chained with `key` (see chain_key)."""
    return Session(engine, info={SESSION_KEY: key}, **options)


def _moment(at: datetime) -> str:
    # Stored without zone by SQLite: naive means UTC, so hashes match whatever the driver hands back.
    return (at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at).isoformat(timespec="microseconds")


def entry_hash(key: bytes, entry: AuditEntry) -> str:
    fields = [
        entry.seq,
        _moment(entry.at),
        entry.actor,
        entry.role,
        entry.action,
        entry.flow_id,
        entry.detail,
        entry.break_glass,
        entry.prev_hash,
    ]
    return hmac.new(
        key, json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode(), hashlib.sha256
    ).hexdigest()


def search_detail(cpr_hash: str, total: int, flow_ids: list[str]) -> str:
    """What a CPR search is audited with: the keyed hash (never the number) and the flows it returned."""
    return f"cpr-hash {cpr_hash}; {total} flows: {' '.join(flow_ids)}"


@event.listens_for(Session, "before_flush")
def _chain_new_entries(session: Session, _context: object, _instances: object) -> None:
    entries = [obj for obj in session.new if isinstance(obj, AuditEntry) and obj.entry_hash is None]
    if not entries:
        return
    key = session.info.get(SESSION_KEY)
    if key is None:
        raise RuntimeError("audit entries need a session from store.audit.audit_session (it carries the chain key)")
    connection = session.connection()
    # Take the chain's lock first (the UPDATE), then read where the chain ends.
    connection.execute(text("UPDATE audithead SET seq = seq WHERE id = 1"))
    seq, last = connection.execute(text("SELECT seq, hash FROM audithead WHERE id = 1")).one()
    for entry in sorted(entries, key=lambda e: e.at):
        seq += 1
        entry.seq, entry.prev_hash = seq, last
        entry.entry_hash = last = entry_hash(key, entry)
    connection.execute(text("UPDATE audithead SET seq = :seq, hash = :hash WHERE id = 1"), {"seq": seq, "hash": last})


@dataclass(frozen=True)
class Verdict:
    entries: int
    problem: str | None  # None: the chain is intact

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(engine: Engine, cpr_hash_key: str) -> Verdict:
    """Walk the chain from the start; the first altered, inserted or deleted entry is the verdict."""
    key = chain_key(cpr_hash_key)
    checked, expected_seq, last = 0, 1, GENESIS
    with Session(engine) as session:
        head = session.get(AuditHead, 1)
        chained = False
        for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).yield_per(1000):
            if entry.seq is None or entry.entry_hash is None:
                if chained:
                    return Verdict(
                        checked, f"entry id {entry.id} was inserted outside the chain (no sequence number or hash)"
                    )
                continue  # written before the chain existed (migration 0004)
            chained = True
            if entry.seq < expected_seq:
                return Verdict(
                    checked, f"entry {entry.seq} (id {entry.id}) appears out of order: inserted or renumbered"
                )
            if entry.seq > expected_seq:
                return Verdict(
                    checked, f"entries {expected_seq}–{entry.seq - 1} were deleted (the chain jumps to {entry.seq})"
                )
            if entry.prev_hash != last:
                return Verdict(
                    checked,
                    f"entry {entry.seq} (id {entry.id}) does not follow the entry before it: inserted, or its "
                    "predecessor altered",
                )
            if not hmac.compare_digest(entry_hash(key, entry), entry.entry_hash):
                return Verdict(
                    checked, f"entry {entry.seq} (id {entry.id}) was altered (its hash does not match its content)"
                )
            checked, expected_seq, last = checked + 1, expected_seq + 1, entry.entry_hash
        if head is None:
            return Verdict(checked, "the chain head is missing")
        if head.seq != checked or head.hash != last:
            return Verdict(
                checked,
                f"entries {checked + 1}–{head.seq} were deleted from the end (the head says {head.seq})"
                if head.seq > checked
                else "the chain head does not match the last entry",
            )
    return Verdict(checked, None)


def export_lines(engine: Engine) -> Iterator[str]:
    """Every entry as one JSON line (for a SIEM), oldest first, with its chain hashes."""
    with Session(engine) as session:
        for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).yield_per(1000):
            yield json.dumps(
                {
                    "seq": entry.seq,
                    "at": _moment(entry.at) + "Z",
                    "actor": entry.actor,
                    "role": entry.role,
                    "action": entry.action,
                    "flow_id": entry.flow_id,
                    "detail": entry.detail,
                    "break_glass": entry.break_glass,
                    "prev_hash": entry.prev_hash,
                    "hash": entry.entry_hash,
                },
                ensure_ascii=False,
            )
