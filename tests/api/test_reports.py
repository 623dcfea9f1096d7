"""The partner report's queries on SQLite and PostgreSQL, over rows with known times: every count
exact, every latency to the second, the period's bounds kept, nothing from outside the period."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from api.reports import BadPeriod, parse_period, partner_report, percentile, report_csv
from messaging import Directory
from store.models import Escalation, Flow, InboundMessage, OutboundMessage
from tests.conftest import DEMO_DIRECTORY

HOSPITAL, LAB, GP, GONE = "200000000000001", "300000000000001", "100000000000001", "999999999999999"
APPOINTMENT, TEST_RESULT, TREATMENT_PLAN = (
    "careflow-appointment-message",
    "careflow-test-result-message",
    "careflow-treatment-plan-message",
)
T0 = datetime(2031, 3, 1, tzinfo=UTC)
PERIOD = parse_period("2031-03-01T00:00:00Z", "2031-03-02T00:00:00Z")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _out(
    session: Session,
    receiver: str,
    header: str,
    *,
    attempt: int = 0,
    created: float,
    sent: float | None = None,
    status: int | None = 202,
    ack: str | None = None,
    acked: float | None = None,
) -> None:
    session.add(
        OutboundMessage(
            message_header_id=header,
            bundle_id=str(uuid.uuid4()),
            step="referral",
            event_code="careflow-referral-message",
            attempt=attempt,
            receiver_sor=receiver,
            endpoint="http://partner",
            body_enc="x",
            created_at=_at(created),
            sent_at=_at(sent) if sent is not None else None,
            http_status=status,
            ack_code=ack,
            acked_at=_at(acked) if acked is not None else None,
        )
    )


def _flow(session: Session, receiving: str, completed: dict[str, float]) -> str:
    flow_id = str(uuid.uuid4())
    steps = [
        {
            "name": n,
            "status": "done" if n in completed else "waiting",
            "deadline": None,
            "completed_at": _at(completed[n]).isoformat().replace("+00:00", "Z") if n in completed else None,
        }
        for n in ("referral", "appointment", "test_result", "treatment_plan")
    ]
    session.add(
        Flow(
            id=flow_id,
            workflow_id=f"referral-{flow_id}",
            pathway="referral",
            referring_sor=GP,
            receiving_sor=receiving,
            cpr_hash="h",
            patient_enc="x",
            reason_enc="x",
            steps_json=json.dumps(steps),
        )
    )
    return flow_id


def _in(
    session: Session, flow_id: str | None, sender: str, event_code: str, received: float, status: str = "delivered"
) -> None:
    session.add(
        InboundMessage(
            message_header_id=str(uuid.uuid4()),
            bundle_id=str(uuid.uuid4()),
            event_code=event_code,
            sender_sor=sender,
            receiver_sor=GP,
            flow_id=flow_id,
            content_type="application/fhir+json",
            body_enc="x",
            received_at=_at(received),
            delivery_status=status,
        )
    )


def _escalation(session: Session, flow_id: str, step: str, reason: str, opened: float) -> None:
    session.add(
        Escalation(
            flow_id=flow_id,
            escalation_key=f"{step}-{uuid.uuid4().hex[:6]}",
            step=step,
            reason=reason,
            opened_at=_at(opened),
        )
    )


@pytest.fixture
def report_rows(engine):  # noqa: ANN001, ANN201
    hour = 3600
    with Session(engine) as session:
        # Acknowledgements: 10 s; a resend after 30 min acknowledged a minute later (1860 s from the
        # first send); a fatal-error after 5 s; one that overtook the HTTP answer (0 s).
        _out(session, HOSPITAL, "m1", created=1 * hour, sent=1 * hour, ack="ok", acked=1 * hour + 10)
        _out(session, HOSPITAL, "m2", created=2 * hour, sent=2 * hour, ack="ok", acked=2 * hour + 1860)
        _out(
            session,
            HOSPITAL,
            "m2",
            attempt=1,
            created=2 * hour + 1800,
            sent=2 * hour + 1800,
            ack="ok",
            acked=2 * hour + 1860,
        )
        _out(session, HOSPITAL, "m3", created=3 * hour, status=422)  # refused: never sent
        _out(session, HOSPITAL, "m4", created=4 * hour, sent=4 * hour, ack="fatal-error", acked=4 * hour + 5)
        _out(session, HOSPITAL, "m5", created=5 * hour, sent=5 * hour + 2, ack="ok", acked=5 * hour + 1)
        _out(session, HOSPITAL, "m6", created=6 * hour, sent=6 * hour)  # not (yet) acknowledged
        _out(session, HOSPITAL, "before", created=-60, sent=-60, ack="fatal-error", acked=-50)  # outside the period
        _out(
            session, HOSPITAL, "after", created=24 * hour, sent=24 * hour, ack="ok", acked=24 * hour + 1
        )  # `until` is exclusive
        _out(session, GONE, "g1", created=7 * hour, sent=7 * hour, ack="ok", acked=7 * hour + 3)
        _out(session, GONE, "g1", attempt=1, created=7 * hour + 1, status=503)  # a resend that got a 5xx: no refusal

        # Flow 1: the referral step ended at 1 h + 10 s; the appointment came 100 s later (a second one,
        # later, does not count); the appointment step ended at 1 h + 120 s (workflow time) and the
        # lab's test result arrived at 1 h + 300 s (180 s); an acknowledgement is no reply.
        f1 = _flow(session, HOSPITAL, {"referral": 1 * hour + 10, "appointment": 1 * hour + 120})
        _in(session, f1, HOSPITAL, APPOINTMENT, 1 * hour + 110)
        _in(session, f1, HOSPITAL, APPOINTMENT, 2 * hour)
        _in(session, f1, LAB, TEST_RESULT, 1 * hour + 300)
        _in(session, f1, HOSPITAL, "acknowledgement-message", 1 * hour + 200)
        # Flow 2: the test result came before its step began (0 s); the appointment after 400 s; a
        # treatment plan refused as invalid and one left for triage do not count.
        f2 = _flow(session, HOSPITAL, {"referral": 3 * hour, "appointment": 3 * hour + 500})
        _in(session, f2, LAB, TEST_RESULT, 3 * hour + 50)
        _in(session, f2, HOSPITAL, APPOINTMENT, 3 * hour + 400)
        _in(session, f2, HOSPITAL, TREATMENT_PLAN, 3 * hour + 600, status="rejected")
        _in(session, f2, HOSPITAL, TREATMENT_PLAN, 3 * hour + 700, status="triage")
        # Flow 3: its first appointment arrived before the period: not this period's reply.
        f3 = _flow(session, HOSPITAL, {"referral": -200})
        _in(session, f3, HOSPITAL, APPOINTMENT, -100)
        _in(session, f3, HOSPITAL, APPOINTMENT, 1 * hour)
        session.flush()  # the flows before their escalations (foreign key)
        # Escalations: two deadline breaches in the period (one per step), one before it, and one
        # that is no deadline at all.
        _escalation(session, f1, "appointment", "no appointment by its deadline", 8 * hour)
        _escalation(session, f2, "test_result", "no test result by its deadline", 9 * hour)
        _escalation(session, f2, "appointment", "no appointment by its deadline", -1)
        _escalation(session, f3, "referral", "no acknowledgement after 2 resends of the referral", 10 * hour)
        session.commit()
    return engine


def test_partner_report_counts_and_latencies(report_rows) -> None:  # noqa: ANN001
    directory = Directory.load(DEMO_DIRECTORY)
    with Session(report_rows) as session:
        report = partner_report(session, PERIOD, directory)
    rows = {p.sor: p for p in report.partners}
    assert sorted(rows) == [HOSPITAL, LAB, GONE]

    hospital = rows[HOSPITAL]
    assert hospital.name == "Kardiologisk afdeling, Demo Hospital"
    assert (hospital.messages_sent, hospital.resends, hospital.acknowledged) == (6, 1, 4)
    assert (hospital.fatal_error_acks, hospital.refused_sends, hospital.fatal_errors) == (1, 1, 2)
    # latencies 0, 5, 10, 1860: nearest-rank p50 is the 2nd, p99 the 4th
    assert (hospital.ack_latency_p50_seconds, hospital.ack_latency_p99_seconds) == (5.0, 1860.0)
    assert hospital.reply_latency["appointment"].model_dump() == {
        "replies": 2,
        "p50_seconds": 100.0,
        "p99_seconds": 400.0,
    }
    assert "treatment_plan" not in hospital.reply_latency and "test_result" not in hospital.reply_latency
    assert (hospital.deadlines_breached, hospital.deadlines_breached_by_step) == (
        2,
        {"appointment": 1, "test_result": 1},
    )

    lab = rows[LAB]
    assert (lab.messages_sent, lab.acknowledged, lab.ack_latency_p50_seconds, lab.deadlines_breached) == (0, 0, None, 0)
    assert lab.reply_latency["test_result"].model_dump() == {"replies": 2, "p50_seconds": 0.0, "p99_seconds": 180.0}

    gone = rows[GONE]
    assert (gone.name, gone.messages_sent, gone.resends, gone.refused_sends, gone.ack_latency_p99_seconds) == (
        "",
        1,
        1,
        0,
        3.0,
    )


def test_partner_report_csv_has_the_same_numbers(report_rows) -> None:  # noqa: ANN001
    import csv
    import io

    with Session(report_rows) as session:
        report = partner_report(session, PERIOD, Directory.load(DEMO_DIRECTORY))
    table = list(csv.DictReader(io.StringIO(report_csv(report))))
    hospital = next(r for r in table if r["sor"] == HOSPITAL)
    assert (
        hospital["messages_sent"],
        hospital["resends"],
        hospital["fatal_errors"],
        hospital["deadlines_breached"],
    ) == ("6", "1", "2", "2")
    assert (float(hospital["ack_latency_p50_seconds"]), float(hospital["ack_latency_p99_seconds"])) == (5.0, 1860.0)
    assert (
        hospital["appointment_replies"],
        hospital["appointment_deadlines_breached"],
        hospital["test_result_reply_p50_seconds"],
    ) == ("2", "1", "")
    lab = next(r for r in table if r["sor"] == LAB)
    assert (
        lab["test_result_replies"],
        float(lab["test_result_reply_p99_seconds"]),
        lab["ack_latency_p50_seconds"],
    ) == ("2", 180.0, "")


def test_an_empty_period_reports_no_partners(report_rows) -> None:  # noqa: ANN001
    with Session(report_rows) as session:
        report = partner_report(session, parse_period("2030-01-01", "2030-02-01"), Directory.load(DEMO_DIRECTORY))
    assert report.partners == []


def test_period_parsing() -> None:
    now = datetime(2031, 3, 31, 12, tzinfo=UTC)
    default = parse_period(None, None, now=now)
    assert (default.since, default.until) == (now - timedelta(days=30), now)
    assert parse_period("2031-03-01", None, now=now).since == datetime(
        2031, 3, 1, tzinfo=UTC
    )  # a date is its midnight, UTC
    assert parse_period("2031-03-01T10:00:00 01:00", "2031-03-02T00:00:00Z").since == datetime(
        2031, 3, 1, 9, tzinfo=UTC
    )  # '+' lost in a URL
    for since, until, parameter in (
        ("yesterday", None, "since"),
        (None, "2031-13-01", "until"),
        ("2031-03-02", "2031-03-01", "since"),
        ("2030-01-01", "2031-03-01", "since"),
    ):
        with pytest.raises(BadPeriod) as err:
            parse_period(since, until, now=now)
        assert err.value.parameter == parameter


def test_nearest_rank_percentiles() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
