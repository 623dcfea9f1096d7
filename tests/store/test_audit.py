"""The audit log on SQLite and PostgreSQL: append-only, hash-chained, verifiable; concurrent
appenders (separate connections, as separate API processes have) never fork the chain."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError

from store.audit import audit_session, chain_key, export_lines, verify_chain
from store.db import make_engine
from store.models import AuditEntry

KEY = "test-cpr-hash-key-for-the-audit-chain"
ROOT = Path(__file__).resolve().parents[2]


def append(engine: Engine, count: int, actor: str = "c1") -> None:
    for i in range(count):
        with audit_session(engine, chain_key(KEY)) as session:
            session.add(
                AuditEntry(actor=actor, role="coordinator", action="read-flow", flow_id=f"flow-{i}", detail=f"read {i}")
            )
            session.commit()


def raw(engine: Engine, sql: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql))


def unguard(engine: Engine) -> None:
    """What a database owner could do: drop the append-only triggers (the chain still tells)."""
    if engine.dialect.name == "postgresql":
        raw(engine, "DROP TRIGGER auditentry_append_only ON auditentry")
    else:
        raw(engine, "DROP TRIGGER auditentry_no_update")
        raw(engine, "DROP TRIGGER auditentry_no_delete")


def test_an_untouched_chain_verifies_and_exports(engine: Engine) -> None:
    append(engine, 5)
    verdict = verify_chain(engine, KEY)
    assert verdict.ok and verdict.entries == 5
    lines = [json.loads(line) for line in export_lines(engine)]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert all(line["prev_hash"] == before["hash"] for before, line in itertools.pairwise(lines))
    assert not verify_chain(engine, "another key").ok, "the chain is keyed"


def test_the_database_refuses_updates_and_deletes(engine: Engine) -> None:
    append(engine, 2)
    for sql in (
        "UPDATE auditentry SET detail = 'nothing to see' WHERE seq = 1",
        "DELETE FROM auditentry WHERE seq = 2",
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            raw(engine, sql)


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        ("UPDATE auditentry SET detail = 'nothing to see' WHERE seq = 3", "entry 3 (id 3) was altered"),
        ("UPDATE auditentry SET actor = 'someone else' WHERE seq = 1", "entry 1 (id 1) was altered"),
        ("DELETE FROM auditentry WHERE seq = 2", "entries 2–2 were deleted"),
        ("DELETE FROM auditentry WHERE seq >= 4", "deleted from the end"),
        (
            "INSERT INTO auditentry (at, actor, role, action, detail, break_glass) VALUES ('2026-01-01 00:00:00', "
            "'x', 'admin', 'read-flow', '', false)",
            "inserted outside the chain",
        ),
        ("UPDATE auditentry SET seq = seq + 100 WHERE seq = 5", "deleted"),
    ],
)
def test_verify_finds_the_first_altered_inserted_or_deleted_entry(engine: Engine, tamper: str, finding: str) -> None:
    append(engine, 5)
    unguard(engine)
    raw(engine, tamper)
    verdict = verify_chain(engine, KEY)
    assert not verdict.ok and finding in verdict.problem, verdict.problem


def test_a_forged_entry_with_a_plausible_chain_is_found(engine: Engine) -> None:
    """An attacker without the key copies the chain's shape: the hash does not match."""
    append(engine, 2)
    last = json.loads(list(export_lines(engine))[-1])
    raw(
        engine,
        "INSERT INTO auditentry (at, actor, role, action, detail, break_glass, seq, prev_hash, entry_hash) VALUES "
        f"('2026-01-01 00:00:00', 'x', 'admin', 'read-flow', '', false, 3, '{last['hash']}', '{'f' * 64}')",
    )
    raw(engine, f"UPDATE audithead SET seq = 3, hash = '{'f' * 64}'")
    verdict = verify_chain(engine, KEY)
    assert not verdict.ok and "entry 3 (id 3) was altered" in verdict.problem


def test_concurrent_appenders_never_fork_the_chain(database_url: str) -> None:
    """Four writers with their own engines (their own connections, like separate API processes)."""
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda pair: append(pair[1], 15, actor=f"writer-{pair[0]}"), enumerate(engines)))
        verdict = verify_chain(engines[0], KEY)
        assert verdict.ok and verdict.entries == 60, verdict
    finally:
        for engine in engines:
            engine.dispose()


def test_careflow_audit_verify_and_export_commands(tmp_path: Path) -> None:
    from store.db import migrate

    url = f"sqlite:///{tmp_path / 'careflow.db'}"
    migrate(url)
    engine = make_engine(url)
    append(engine, 3)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAREFLOW_")},
        "CAREFLOW_DATABASE_URL": url,
        "CAREFLOW_CPR_HASH_KEY": KEY,
        "CAREFLOW_ENV": "dev",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "careflow", "audit", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    intact = run("verify")
    assert intact.returncode == 0 and "3 entries, chain intact" in intact.stdout
    exported = run("export", "--output", str(tmp_path / "audit.jsonl"))
    assert exported.returncode == 0 and len((tmp_path / "audit.jsonl").read_text().splitlines()) == 3
    unguard(engine)
    raw(engine, "UPDATE auditentry SET detail = 'edited' WHERE seq = 2")
    broken = run("verify")
    assert broken.returncode == 1 and "entry 2 (id 2) was altered" in broken.stdout
    engine.dispose()
