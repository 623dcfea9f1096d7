"""Reports for coordinators: `GET /reports/partners` (JSON) and `GET /reports/partners.csv`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from api.deps import Coordinator, DirectoryDep, SessionDep
from api.reports import BadPeriod, PartnerReport, Period, csv_filename, parse_period, partner_report, report_csv

router = APIRouter(prefix="/reports", tags=["reports"])

PERIOD_HELP = (
    "ISO 8601 datetime (a date alone is its midnight, no offset is UTC); default: the last 30 days, at most 366"
)
Moment = Annotated[str | None, Query(description=PERIOD_HELP, max_length=64)]


def _period(since: str | None, until: str | None) -> Period:
    try:
        return parse_period(since, until)
    except BadPeriod as err:
        raise HTTPException(422, str(err)) from None


@router.get("/partners", response_model=PartnerReport)
def partners(
    user: Coordinator, session: SessionDep, directory: DirectoryDep, since: Moment = None, until: Moment = None
) -> PartnerReport:
    """Per partner: messages sent, acknowledgement and reply latency, resends, fatal errors, deadlines breached."""
    return partner_report(session, _period(since, until), directory)


@router.get("/partners.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def partners_csv(
    user: Coordinator, session: SessionDep, directory: DirectoryDep, since: Moment = None, until: Moment = None
) -> Response:
    """The partner report as CSV with a header row (same filter and definitions as the JSON)."""
    period = _period(since, until)
    report = partner_report(session, period, directory)
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{csv_filename(period)}"'},
    )
