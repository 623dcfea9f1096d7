"""Legal deadlines on the Danish working-day calendar: Easter, Christmas, Constitution Day,
weekends, Store Bededag's abolition, time zones, and versioned rule sets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from careflow.deadlines import (
    COPENHAGEN,
    DEFAULT_RULE_BOOK,
    RULES_2026_1,
    ClockStart,
    DeadlineRule,
    DeadlineRuleBook,
    DeadlineRules,
    DeadlineUnit,
    OptionalDay,
    Track,
    WorkingDayCalendar,
    add_calendar_days,
    add_working_days,
    compute_deadline,
    deadlines_for,
    load_rule_book,
    working_days_between,
)

DEFAULT = WorkingDayCalendar()
CLOSED_EVES = WorkingDayCalendar(closed_optional_days=frozenset(OptionalDay))


def cph(*args: int) -> datetime:
    return datetime(*args, tzinfo=COPENHAGEN)


def test_the_holidays_library_is_the_pinned_one() -> None:
    # The calendar's facts come from this version; an upgrade is a deliberate change with a re-run.
    assert holidays.__version__ == "0.109"


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2026, 4, 2), "Maundy Thursday"),
        (date(2026, 4, 3), "Good Friday"),
        (date(2026, 4, 6), "Easter Monday"),
        (date(2026, 5, 14), "Ascension Day"),
        (date(2026, 5, 25), "Pentecost Monday"),
        (date(2026, 12, 25), "Christmas Day"),
        (date(2027, 1, 1), "New Year's Day"),
        (date(2023, 5, 5), "Great Prayer Day"),  # Store Bededag, abolished from 2024
        (date(2026, 4, 4), "Saturday"),
        (date(2026, 4, 5), "Sunday"),
    ],
)
def test_non_working_days(day: date, reason: str) -> None:
    assert DEFAULT.non_working_reason(day) == reason
    assert not DEFAULT.is_working_day(day)


def test_store_bededag_is_a_working_day_since_2024() -> None:
    assert DEFAULT.is_working_day(date(2024, 4, 26))  # the fourth Friday after Easter 2024
    assert DEFAULT.is_working_day(date(2026, 5, 1))  # and 2026's would have been 1 May


@pytest.mark.parametrize(
    ("day", "optional"),
    [
        (date(2026, 6, 5), OptionalDay.CONSTITUTION_DAY),
        (date(2026, 12, 24), OptionalDay.CHRISTMAS_EVE),
        (date(2026, 12, 31), OptionalDay.NEW_YEARS_EVE),
        (date(2026, 5, 1), OptionalDay.WORKERS_DAY),
    ],
)
def test_optional_days_are_working_days_unless_the_rule_set_closes_them(day: date, optional: OptionalDay) -> None:
    assert DEFAULT.is_working_day(day)
    closed = WorkingDayCalendar(closed_optional_days=frozenset({optional}))
    assert not closed.is_working_day(day)
    assert closed.non_working_reason(day)


@pytest.mark.parametrize("year", [2000, 2024, 2026, 2050, 2100])
def test_every_optional_day_is_known_to_the_library_each_year(year: int) -> None:
    # guards the mapping from the library's names: a renamed holiday would silently reopen a day
    closed = {
        d for d in (date(year, 6, 5), date(year, 12, 24), date(year, 12, 31), date(year, 5, 1)) if d.weekday() < 5
    }
    assert all(not CLOSED_EVES.is_working_day(d) for d in closed)


@pytest.mark.parametrize(
    ("start", "days", "calendar", "due"),
    [
        # Easter 2026: Maundy Thursday 2 April to Easter Monday 6 April
        (date(2026, 3, 30), 8, DEFAULT, date(2026, 4, 14)),
        (date(2026, 4, 1), 1, DEFAULT, date(2026, 4, 7)),
        # Christmas 2026: 24 December counts by default, not when the rule set closes it
        (date(2026, 12, 18), 8, DEFAULT, date(2026, 12, 31)),
        (date(2026, 12, 18), 8, CLOSED_EVES, date(2027, 1, 5)),
        (date(2026, 12, 24), 1, DEFAULT, date(2026, 12, 28)),
        # Constitution Day 2026 (a Friday)
        (date(2026, 6, 1), 8, DEFAULT, date(2026, 6, 11)),
        (
            date(2026, 6, 1),
            8,
            WorkingDayCalendar(closed_optional_days=frozenset({OptionalDay.CONSTITUTION_DAY})),
            date(2026, 6, 12),
        ),
        # weekends: received on a Saturday, the clock starts on Monday
        (date(2026, 3, 7), 1, DEFAULT, date(2026, 3, 9)),
        (date(2026, 3, 6), 5, DEFAULT, date(2026, 3, 13)),
        (date(2026, 3, 6), 0, DEFAULT, date(2026, 3, 6)),
    ],
)
def test_add_working_days(start: date, days: int, calendar: WorkingDayCalendar, due: date) -> None:
    assert add_working_days(start, days, calendar) == due
    assert working_days_between(start, due, calendar) == days


@given(st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 1, 1)), st.integers(0, 60))
def test_working_days_land_on_working_days_and_count_back(start: date, days: int) -> None:
    due = add_working_days(start, days)
    assert due >= start
    if days:
        assert DEFAULT.is_working_day(due)
    assert working_days_between(start, due) == days
    # n working days never take fewer than n calendar days, nor more than ~2n + holidays
    assert days <= (due - start).days <= 2 * days + 7


def test_calendar_days_ignore_holidays() -> None:
    assert add_calendar_days(date(2026, 3, 30), 14) == date(2026, 4, 13)
    assert add_calendar_days(date(2026, 12, 10), 30) == date(2027, 1, 9)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        add_working_days(date(2026, 1, 1), -1)
    with pytest.raises(ValueError):
        add_calendar_days(date(2026, 1, 1), -1)
    with pytest.raises(ValueError, match="covers"):
        add_working_days(date(2100, 12, 20), 30)
    with pytest.raises(ValueError, match="aware"):
        compute_deadline(RULES_2026_1, "assessment", datetime(2026, 3, 2, 10))


def test_patient_informed_within_8_working_days_over_easter() -> None:
    deadline = compute_deadline(RULES_2026_1, "patient-informed", cph(2026, 3, 30, 14, 5))
    assert deadline.due_date == date(2026, 4, 14)
    assert deadline.due_at == cph(2026, 4, 15, 0, 0)
    assert not deadline.is_breached(cph(2026, 4, 14, 23, 59))
    assert deadline.is_breached(cph(2026, 4, 15, 0, 0))
    reason = deadline.escalation_reason()
    assert "Patient informed within 8 working days" in reason and "patient-informed" in reason and "2026-1" in reason


def test_the_danish_date_of_receipt_counts_not_the_utc_date() -> None:
    # 23:30 UTC on Tuesday 31 March 2026 is already Wednesday 1 April in Copenhagen (summer time)
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert compute_deadline(RULES_2026_1, "patient-informed", late).due_date == date(2026, 4, 16)
    assert compute_deadline(RULES_2026_1, "patient-informed", late - timedelta(hours=2)).due_date == date(2026, 4, 15)


def test_assessment_within_30_days_and_the_cancer_waiting_times() -> None:
    received = cph(2026, 12, 10, 9, 0)
    standard = {
        d.rule_id: d for d in deadlines_for(RULES_2026_1, Track.STANDARD, ClockStart.REFERRAL_RECEIVED, received)
    }
    assert set(standard) == {"patient-informed", "assessment"}
    assert standard["assessment"].due_date == date(2027, 1, 9)

    cancer = {d.rule_id: d for d in deadlines_for(RULES_2026_1, Track.CANCER, ClockStart.REFERRAL_RECEIVED, received)}
    assert set(cancer) == {"patient-informed", "cancer-assessment-start"}
    assert cancer["cancer-assessment-start"].due_date == date(2026, 12, 24)

    accepted = cph(2026, 12, 20, 15, 0)
    treatment = deadlines_for(RULES_2026_1, Track.CANCER, ClockStart.TREATMENT_OFFER_ACCEPTED, accepted)
    assert [(d.rule_id, d.due_date) for d in treatment] == [("cancer-treatment-start", date(2027, 1, 3))]
    assert deadlines_for(RULES_2026_1, Track.STANDARD, ClockStart.TREATMENT_OFFER_ACCEPTED, accepted) == []


def test_every_shipped_rule_has_an_id_and_a_human_name() -> None:
    for rules in DEFAULT_RULE_BOOK.versions:
        for rule in rules.rules:
            assert rule.id and rule.name and rule.name != rule.id


# --- versions ------------------------------------------------------------------------------------


def _stricter(version: str, valid_from: date) -> DeadlineRules:
    rule = RULES_2026_1.rule("assessment").model_copy(update={"amount": 20})
    return DeadlineRules(
        version=version,
        valid_from=valid_from,
        calendar=CLOSED_EVES,
        rules=tuple(rule if r.id == "assessment" else r for r in RULES_2026_1.rules),
    )


def test_the_version_in_force_at_pathway_start_is_kept() -> None:
    book = DeadlineRuleBook(versions=(RULES_2026_1, _stricter("2026-2", date(2026, 7, 1))))
    pinned = book.in_force(cph(2026, 6, 30, 23, 59))  # a pathway started the day before the change
    assert pinned.version == "2026-1"
    assert book.in_force(cph(2026, 7, 1, 0, 0)).version == "2026-2"
    # the running pathway keeps computing with its own version; new pathways get the new one
    received = cph(2026, 6, 30, 12, 0)
    assert compute_deadline(pinned, "assessment", received).due_date == date(2026, 7, 30)
    assert compute_deadline(book.in_force(cph(2026, 7, 1, 9)), "assessment", received).due_date == date(2026, 7, 20)
    # a coordinator applying the new rule to a running pathway asks for it by version
    assert compute_deadline(book.get("2026-2"), "assessment", received).rules_version == "2026-2"
    with pytest.raises(LookupError):
        book.in_force(cph(2025, 12, 31, 12))
    with pytest.raises(KeyError):
        book.get("1999-1")


def test_pinned_rules_survive_serialisation_unchanged() -> None:
    # what a workflow input carries: the rules themselves, not a version to look up later
    rules = _stricter("2026-2", date(2026, 7, 1))
    assert DeadlineRules.model_validate_json(rules.model_dump_json()) == rules


def test_rule_books_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(DeadlineRuleBook(versions=(RULES_2026_1, _stricter("2026-2", date(2026, 7, 1)))).model_dump_json())
    assert [v.version for v in load_rule_book(path).versions] == ["2026-1", "2026-2"]
    with pytest.raises(ValidationError):
        DeadlineRuleBook(versions=(RULES_2026_1, RULES_2026_1))
    with pytest.raises(ValidationError):
        DeadlineRules(version="x", valid_from=date(2026, 1, 1), rules=(RULES_2026_1.rules[0], RULES_2026_1.rules[0]))
    with pytest.raises(ValidationError):
        DeadlineRule(
            id="Bad Id",
            name="x",
            amount=1,
            unit=DeadlineUnit.WORKING_DAYS,
            starts_at=ClockStart.REFERRAL_RECEIVED,
            tracks=frozenset({Track.STANDARD}),
        )
    with pytest.raises(ValidationError):
        DeadlineRule(
            id="zero",
            name="x",
            amount=0,
            unit=DeadlineUnit.WORKING_DAYS,
            starts_at=ClockStart.REFERRAL_RECEIVED,
            tracks=frozenset({Track.STANDARD}),
        )
