"""The partner SLA report: per partner organisation (SOR), what careflow sent it and how it answered.
Read-model queries shared by `GET /reports/partners` and the console; SORs and counts only, no patient data.

Definitions (the README repeats them):
- messages_sent: messages careflow addressed to the partner (first sends, attempt 0) built in the period;
  resends: later sends of the same message (attempt > 0, a new Bundle.id) built in the period.
- acknowledgement latency: per message first sent in the period, from its first successful send
  (`sent_at`) to the first acknowledgement of any code (`acked_at`); an acknowledgement that overtook
  the partner's HTTP answer counts as 0 s. Unacknowledged messages have no latency.
- fatal_errors: messages acknowledged `fatal-error` plus sends the partner refused with a 4xx.
- reply latency per reply step: from the step's start (the moment the pathway finished the step
  before it, as the workflow recorded it) to the arrival in careflow of the first reply of the step's
  message type (`InboundMessage.received_at`: the partner's time, not careflow's delivery time), for
  replies that arrived in the period, attributed to the partner that sent the reply. A reply that
  arrived before its step began (kept and applied later) counts as 0 s.
- deadlines_breached: escalations opened in the period because a reply step's deadline passed,
  attributed to the flow's receiving organisation (careflow does not record who else should answer).
- Percentiles are nearest-rank over the selected latencies.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func
from sqlmodel import Session, col, select

from careflow.metrics import DEADLINE_REASON_SUFFIX
from messaging import Directory, UnknownOrganization
from store.models import Escalation, Flow, InboundMessage, OutboundMessage, utcnow
from workflows.declare import AwaitReply
from workflows.registry import PATHWAYS

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=366)
FATAL_ERROR = "fatal-error"
# Replies that reached careflow for a pathway (delivered, or stored and waiting for the relay).
REPLY_STATUSES = ("received", "delivered")


class BadPeriod(ValueError):
    """The period filter cannot be used; the message says why (answered as 422)."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime


def parse_period(since: str | None, until: str | None, *, now: datetime | None = None) -> Period:
    """ISO 8601 datetimes (a date alone means its midnight; no offset means UTC); by default the last
    30 days; `since` before `until`, at most 366 days apart."""
    end = _parse_moment(until, "until") if until else (now or utcnow())
    start = _parse_moment(since, "since") if since else end - DEFAULT_PERIOD
    if start >= end:
        raise BadPeriod(
            f"the period is empty: since ({start.isoformat()}) must be before until ({end.isoformat()})", "since"
        )
    if end - start > MAX_PERIOD:
        raise BadPeriod(f"the period is longer than {MAX_PERIOD.days} days; ask for a shorter one", "since")
    return Period(start, end)


def _parse_moment(value: str, parameter: str) -> datetime:
    text = value.strip()
    # An unencoded '+' in a query string arrives as a space: "…T10:00:00 01:00".
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadPeriod(
            f"{parameter} is not an ISO 8601 datetime (e.g. 2025-01-31T00:00:00Z): {value[:40]!r}", parameter
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class StepLatency(BaseModel):
    replies: int = 0
    p50_seconds: float | None = None
    p99_seconds: float | None = None


class PartnerSla(BaseModel):
    """One partner organisation's row of the report."""

    sor: str
    name: str = Field(description="from the directory; empty for an organisation no longer in it")
    messages_sent: int = 0
    resends: int = 0
    acknowledged: int = 0
    ack_latency_p50_seconds: float | None = None
    ack_latency_p99_seconds: float | None = None
    fatal_error_acks: int = 0
    refused_sends: int = Field(0, description="sends the partner answered with a 4xx")
    fatal_errors: int = Field(0, description="fatal_error_acks + refused_sends")
    deadlines_breached: int = 0
    deadlines_breached_by_step: dict[str, int] = {}
    reply_latency: dict[str, StepLatency] = Field({}, description="per reply step")


class PartnerReport(BaseModel):
    since: datetime
    until: datetime
    partners: list[PartnerSla]


def reply_steps() -> dict[str, dict[str, tuple[str, str]]]:
    """pathway → reply message type → (step, the step before it), from the pathways' declarations."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for name, pathway in PATHWAYS.items():
        steps = pathway.steps
        found[name] = {
            s.message: (s.name, steps[i - 1].name) for i, s in enumerate(steps) if isinstance(s, AwaitReply) and i > 0
        }
    return found


def reply_step_names() -> list[str]:
    """Every reply step, in declaration order: the report's (and the CSV's) step columns."""
    names: list[str] = []
    for by_kind in reply_steps().values():
        names += [step for step, _ in by_kind.values() if step not in names]
    return names


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def partner_report(session: Session, period: Period, directory: Directory) -> PartnerReport:
    rows: dict[str, PartnerSla] = {}

    def row(sor: str) -> PartnerSla:
        if sor not in rows:
            try:
                name = directory.get(sor).name
            except UnknownOrganization:
                name = ""  # left the directory since: its history still counts
            rows[sor] = PartnerSla(sor=sor, name=name)
        return rows[sor]

    in_period = and_(col(OutboundMessage.created_at) >= period.since, col(OutboundMessage.created_at) < period.until)
    counts = (
        select(
            OutboundMessage.receiver_sor,
            func.sum(case((col(OutboundMessage.attempt) == 0, 1), else_=0)),
            func.sum(case((col(OutboundMessage.attempt) > 0, 1), else_=0)),
            func.sum(
                case(
                    (and_(col(OutboundMessage.http_status) >= 400, col(OutboundMessage.http_status) < 500), 1), else_=0
                )
            ),
            func.count(
                func.distinct(case((col(OutboundMessage.ack_code) == FATAL_ERROR, OutboundMessage.message_header_id)))
            ),
        )
        .where(in_period)
        .group_by(OutboundMessage.receiver_sor)
    )
    for sor, sent, resends, refused, fatal_acks in session.exec(counts).all():
        r = row(sor)
        r.messages_sent, r.resends, r.refused_sends, r.fatal_error_acks = (
            int(sent or 0),
            int(resends or 0),
            int(refused or 0),
            int(fatal_acks or 0),
        )
        r.fatal_errors = r.refused_sends + r.fatal_error_acks

    # Acknowledgement latency: every send of each message first sent in the period.
    first_sends = select(OutboundMessage.message_header_id).where(in_period, col(OutboundMessage.attempt) == 0)
    acked = (
        select(OutboundMessage.receiver_sor, func.min(OutboundMessage.sent_at), func.min(OutboundMessage.acked_at))
        .where(col(OutboundMessage.message_header_id).in_(first_sends))
        .group_by(OutboundMessage.receiver_sor, OutboundMessage.message_header_id)
        .having(and_(func.min(OutboundMessage.sent_at).is_not(None), func.min(OutboundMessage.acked_at).is_not(None)))
    )
    ack_latencies: dict[str, list[float]] = {}
    for sor, sent_at, acked_at in session.exec(acked).all():
        ack_latencies.setdefault(sor, []).append(max(0.0, (_utc(acked_at) - _utc(sent_at)).total_seconds()))
    for sor, latencies in ack_latencies.items():
        r = row(sor)
        r.acknowledged = len(latencies)
        r.ack_latency_p50_seconds, r.ack_latency_p99_seconds = percentile(latencies, 0.50), percentile(latencies, 0.99)

    _reply_latencies(session, period, row)

    breaches = (
        select(Flow.receiving_sor, Escalation.step, func.count())
        .join(Flow, col(Flow.id) == col(Escalation.flow_id))
        .where(
            col(Escalation.reason).endswith(DEADLINE_REASON_SUFFIX),
            col(Escalation.opened_at) >= period.since,
            col(Escalation.opened_at) < period.until,
        )
        .group_by(Flow.receiving_sor, Escalation.step)
    )
    for sor, step, n in session.exec(breaches).all():
        r = row(sor)
        r.deadlines_breached += n
        r.deadlines_breached_by_step[step] = r.deadlines_breached_by_step.get(step, 0) + n

    return PartnerReport(since=period.since, until=period.until, partners=[rows[sor] for sor in sorted(rows)])


def _reply_latencies(session: Session, period: Period, row) -> None:  # noqa: ANN001
    by_pathway = reply_steps()
    kinds = sorted({kind for by_kind in by_pathway.values() for kind in by_kind})
    if not kinds:
        return
    first_at = func.min(InboundMessage.received_at)
    first_replies = (
        select(InboundMessage.flow_id, InboundMessage.event_code, InboundMessage.sender_sor, first_at.label("first_at"))
        .where(
            col(InboundMessage.flow_id).is_not(None),
            col(InboundMessage.event_code).in_(kinds),
            col(InboundMessage.delivery_status).in_(REPLY_STATUSES),
        )
        .where(col(InboundMessage.received_at) < period.until)
        .group_by(InboundMessage.flow_id, InboundMessage.event_code, InboundMessage.sender_sor)
        .having(first_at >= period.since)
        .subquery()
    )
    query = select(
        first_replies.c.flow_id,
        first_replies.c.event_code,
        first_replies.c.sender_sor,
        first_replies.c.first_at,
        Flow.pathway,
        Flow.steps_json,
    ).join(Flow, col(Flow.id) == first_replies.c.flow_id)
    earliest: dict[tuple[str, str], tuple[datetime, str, str, str]] = {}
    for flow_id, event_code, sender, at, pathway, steps_json in session.exec(query).all():
        key = (flow_id, event_code)
        at = _utc(at if isinstance(at, datetime) else datetime.fromisoformat(str(at)))
        if key not in earliest or at < earliest[key][0]:
            earliest[key] = (at, sender, pathway, steps_json)
    latencies: dict[tuple[str, str], list[float]] = {}
    for (_flow_id, event_code), (at, sender, pathway, steps_json) in earliest.items():
        step_and_previous = by_pathway.get(pathway, {}).get(event_code)
        if step_and_previous is None:
            continue
        step, previous = step_and_previous
        completed = {s.get("name"): s.get("completed_at") for s in json.loads(steps_json or "[]")}
        started = completed.get(previous)
        if not started:
            continue  # the step before never finished: this reply answered no open step
        latencies.setdefault((sender, step), []).append(
            max(0.0, (at - _utc(datetime.fromisoformat(started))).total_seconds())
        )
    for (sender, step), values in latencies.items():
        row(sender).reply_latency[step] = StepLatency(
            replies=len(values), p50_seconds=percentile(values, 0.50), p99_seconds=percentile(values, 0.99)
        )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def csv_columns() -> list[str]:
    columns = [
        "sor", "name", "messages_sent", "resends", "acknowledged", "ack_latency_p50_seconds", "ack_latency_p99_seconds",
        "fatal_error_acks", "refused_sends", "fatal_errors", "deadlines_breached",
    ]  # fmt: skip
    for step in reply_step_names():
        columns += [
            f"{step}_replies",
            f"{step}_reply_p50_seconds",
            f"{step}_reply_p99_seconds",
            f"{step}_deadlines_breached",
        ]
    return columns


def report_csv(report: PartnerReport) -> str:
    """The report as CSV, one partner a row, a header row first; empty cells where there is no latency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_columns())
    for p in report.partners:
        cells: list[object] = [
            p.sor,
            p.name,
            p.messages_sent,
            p.resends,
            p.acknowledged,
            _num(p.ack_latency_p50_seconds),
            _num(p.ack_latency_p99_seconds),
            p.fatal_error_acks,
            p.refused_sends,
            p.fatal_errors,
            p.deadlines_breached,
        ]
        for step in reply_step_names():
            latency = p.reply_latency.get(step, StepLatency())
            cells += [
                latency.replies,
                _num(latency.p50_seconds),
                _num(latency.p99_seconds),
                p.deadlines_breached_by_step.get(step, 0),
            ]
        writer.writerow(cells)
    return out.getvalue()


def csv_filename(period: Period) -> str:
    return f"careflow-partners-{period.since:%Y%m%d}-{period.until:%Y%m%d}.csv"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
