"""The throughput benchmarks run end to end at a tiny size and print their summaries (their figures
are not asserted: the machine is shared). Real processes: Temporal dev servers, worker, API, simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_throughput_prints_both_runs_their_ratio_hops_and_history_size() -> None:
    out = run("bench_throughput.py", "--flows", "3", "--histories", "2")
    assert re.search(r"^machine: nproc \d+, .*load average [\d.]+", out, re.M)
    assert re.search(r"^bare: flows 3, completed 3, [\d.]+ flows/s", out, re.M)
    assert re.search(
        r"^careflow: referrals 3, accepted 3, completed 3, [\d.]+ flows/s, [\d.]+ messages/s \(24 MedCom messages",
        out,
        re.M,
    )
    assert re.search(r"^ratio: careflow / bare = [\d.]+", out, re.M)
    for process in ("temporal", "worker", "api", "simulator"):
        assert re.search(rf"^  {process} +CPU +\d+ %.*peak RSS +\d+ MB", out, re.M), process
    for hop in ("inbound accepted → signalled", "signalled → next activity", "reply accepted → ack at partner"):
        assert re.search(rf"careflow {hop} +p50 +\d+ ms +p99 +\d+ ms", out), hop
    assert re.search(r"^  careflow events \d+–\d+, bytes \d+–\d+, activities 5–5 \(local 5–5\), signals 4–4", out, re.M)
    assert re.search(r"^  bare +events \d+–\d+, bytes \d+–\d+, activities 5–5 \(local 0–0\), signals 4–4", out, re.M)


def test_inbound_posts_every_reply_and_the_partner_gets_every_acknowledgement() -> None:
    out = run("bench_inbound.py", "--flows", "2", "--concurrency", "2", "--resent")
    assert re.search(r"^inbound: posted 6 with 2 in flight: [\d.]+ messages/s .*answers \{202: 6\}", out, re.M)
    assert re.search(r"^inbound: acknowledgements at the partner 6/6 ", out, re.M)
    # The relay sends none of them again: each was marked sent long before its grace ran out.
    settled = r"^inbound: acknowledgements at the partner once the relay's grace had passed: 6 \(0 sent twice\)"
    assert re.search(settled, out, re.M)


def test_inbound_over_vans_posts_envelopes_and_gets_receipts() -> None:
    out = run("bench_inbound.py", "--flows", "2", "--concurrency", "2", "--transport", "vans")
    assert "replies to post over vans" in out
    assert re.search(r"^inbound: posted 6 with 2 in flight: [\d.]+ messages/s .*answers \{200: 6\}", out, re.M)
    assert re.search(r"^inbound: acknowledgements at the partner 6/6 ", out, re.M)


def test_soak_opens_pathways_waiting_on_deadlines_and_prints_worker_rss_per_level() -> None:
    out = run("bench_throughput.py", "--soak", "3,6", "--max-cached", "4", "--soak-timeout", "120")
    assert re.search(r"^== soak: worker RSS with 3, 6 open referral pathways, max_cached_workflows 4 ", out, re.M)
    assert re.search(r"^soak: open +3 \(asked 3\) .* worker RSS +\d+ MB", out, re.M)
    assert re.search(r"^soak: open +6 \(asked 6\) .* worker RSS +\d+ MB", out, re.M)
    assert re.search(r"^soak: worker RSS \d+ MB at 6 vs \d+ MB at 3: [+-]\d+ %", out, re.M)


def test_sandbox_replays_a_recorded_pathway_and_prints_cpu_per_runner() -> None:
    out = run("bench_sandbox.py", "--n", "3")
    for runner in ("worker", "strict"):
        line = rf"^referral-late-appointment-local-projections, {runner} runner: [\d.]+ ms CPU per workflow replayed"
        assert re.search(line + r" \(n=3\)", out, re.M)
