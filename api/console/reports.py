"""Console report pages: the partner SLA report with a server-rendered chart (inline SVG, no script)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.web import ConsoleRoute, CurrentCoordinator, render
from api.deps import DirectoryDep, SessionDep
from api.reports import (
    BadPeriod,
    PartnerSla,
    Period,
    csv_filename,
    parse_period,
    partner_report,
    reply_step_names,
    report_csv,
)
from store.models import utcnow

router = APIRouter(prefix="/console/reports", route_class=ConsoleRoute, include_in_schema=False)

PRESETS = (
    ("24 h", timedelta(days=1)),
    ("7 days", timedelta(days=7)),
    ("30 days", timedelta(days=30)),
    ("90 days", timedelta(days=90)),
)
# Chart geometry (SVG user units).
LABEL_WIDTH, BAR_WIDTH, ROW_HEIGHT, TOP = 330, 520, 34, 28


@dataclass(frozen=True)
class Bar:
    """One partner's row of the chart: the p99 bar with the p50 bar drawn over it."""

    sor: str
    name: str
    y: int
    p50: float | None
    p99: float | None
    p50_width: float
    p99_width: float


def duration(seconds: float | None) -> str:
    """A latency for people: '0.12 s', '4.5 min', '3.2 h', '2.1 d'; '—' when there is none."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def chart(partners: list[PartnerSla]) -> dict:
    """Horizontal bars of acknowledgement latency, p50 over p99, on one linear scale."""
    scale_max = max((p.ack_latency_p99_seconds or 0 for p in partners), default=0) or 1.0
    bars = [
        Bar(
            sor=p.sor,
            name=p.name or p.sor,
            y=TOP + i * ROW_HEIGHT,
            p50=p.ack_latency_p50_seconds,
            p99=p.ack_latency_p99_seconds,
            p50_width=round(BAR_WIDTH * (p.ack_latency_p50_seconds or 0) / scale_max, 1),
            p99_width=round(BAR_WIDTH * (p.ack_latency_p99_seconds or 0) / scale_max, 1),
        )
        for i, p in enumerate(partners)
    ]
    ticks = [(round(LABEL_WIDTH + BAR_WIDTH * f, 1), duration(scale_max * f)) for f in (0, 0.25, 0.5, 0.75, 1)]
    return {
        "bars": bars,
        "ticks": ticks,
        "width": LABEL_WIDTH + BAR_WIDTH + 90,
        "height": TOP + len(bars) * ROW_HEIGHT + 10,
        "label_width": LABEL_WIDTH,
        "row_height": ROW_HEIGHT,
    }


def _period(since: str | None, until: str | None) -> Period:
    try:
        return parse_period(since or None, until or None)
    except BadPeriod as err:
        raise HTTPException(422, str(err)) from None


@router.get("/partners", response_class=HTMLResponse)
def partners(
    request: Request,
    user: CurrentCoordinator,
    session: SessionDep,
    directory: DirectoryDep,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Per partner: acknowledgement latency as a chart, and the whole report as a table; CSV export."""
    report = partner_report(session, _period(since, until), directory)
    now = utcnow()
    presets = [(label, (now - span).strftime("%Y-%m-%dT%H:%M:%SZ")) for label, span in PRESETS]
    return render(
        request,
        "reports_partners.html",
        {
            "user": user,
            "report": report,
            "chart": chart(report.partners),
            "steps": reply_step_names(),
            "duration": duration,
            "params": {"since": since or "", "until": until or ""},
            "presets": presets,
        },
    )


@router.get("/partners.csv")
def partners_csv(
    user: CurrentCoordinator,
    session: SessionDep,
    directory: DirectoryDep,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The same CSV as `GET /reports/partners.csv`, for the console's session (the API wants a bearer token)."""
    period = _period(since, until)
    body = report_csv(partner_report(session, period, directory))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{csv_filename(period)}"'},
    )
