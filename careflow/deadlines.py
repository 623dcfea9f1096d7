"""Legal deadlines of care pathways on the Danish working-day calendar, as versioned rule sets.

Pure and deterministic, for Temporal workflow code: no I/O and no clock once imported (the holiday
table and the Copenhagen zone are loaded at import; pass this module and `holidays` through the
workflow sandbox with `workflow.unsafe.imports_passed_through()`), and every function takes the
moment it reasons about as an argument.

Working days ("hverdage") are Monday to Friday except the official public holidays (helligdage) as
the `holidays` library knows them, Store Bededag included up to its abolition in 2024. Constitution
Day (5 June), Christmas Eve, New Year's Eve and 1 May are not public holidays by law (the library
lists them as "optional"): by default they count as working days, which gives the earlier of the two
possible deadlines, so careflow escalates a day early rather than a day late. A rule set can close
any of them (`WorkingDayCalendar.closed_optional_days`) and records that choice with its version.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
# The span the holiday table covers; deadlines outside it are refused rather than guessed.
FIRST_YEAR, LAST_YEAR = 2000, 2100


class OptionalDay(StrEnum):
    """Days off by custom or agreement in Denmark that are not public holidays by law."""

    CONSTITUTION_DAY = "constitution-day"  # Grundlovsdag, 5 June
    CHRISTMAS_EVE = "christmas-eve"  # juleaftensdag, 24 December
    NEW_YEARS_EVE = "new-years-eve"  # nytårsaftensdag, 31 December
    WORKERS_DAY = "workers-day"  # 1 May


# The `holidays` library's English names of its Danish "optional" category, per OptionalDay.
_OPTIONAL_NAMES = {
    "Constitution Day": OptionalDay.CONSTITUTION_DAY,
    "Christmas Eve": OptionalDay.CHRISTMAS_EVE,
    "New Year's Eve": OptionalDay.NEW_YEARS_EVE,
    "Workers' Day": OptionalDay.WORKERS_DAY,
}


def _table(category: str) -> dict[date, str]:
    found = holidays.country_holidays(
        "DK", years=range(FIRST_YEAR, LAST_YEAR + 1), categories=(category,), language="en_US"
    )
    return dict(found.items())


PUBLIC_HOLIDAYS: dict[date, str] = _table("public")
_OPTIONAL: dict[date, OptionalDay] = {
    day: _OPTIONAL_NAMES[name] for day, name in _table("optional").items() if name in _OPTIONAL_NAMES
}
_OPTIONAL_LABELS = {v: k for k, v in _OPTIONAL_NAMES.items()}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkingDayCalendar(_Frozen):
    """Which days count as working days: weekdays that are neither public holidays nor closed."""

    closed_optional_days: frozenset[OptionalDay] = frozenset()

    def non_working_reason(self, day: date) -> str | None:
        """Why `day` is not a working day ("Saturday", "Easter Monday", ...), None if it is one."""
        _in_span(day)
        if day.weekday() >= 5:
            return "Saturday" if day.weekday() == 5 else "Sunday"  # not strftime: it follows the locale
        if day in PUBLIC_HOLIDAYS:
            return PUBLIC_HOLIDAYS[day]
        optional = _OPTIONAL.get(day)
        if optional is not None and optional in self.closed_optional_days:
            return _OPTIONAL_LABELS[optional]
        return None

    def is_working_day(self, day: date) -> bool:
        return self.non_working_reason(day) is None


def _in_span(day: date) -> None:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"the working-day calendar covers {FIRST_YEAR}-{LAST_YEAR}, not {day.year}")


def add_working_days(start: date, days: int, calendar: WorkingDayCalendar = WorkingDayCalendar()) -> date:
    """The `days`-th working day after `start` (`start` itself never counts; 0 gives `start`)."""
    if days < 0:
        raise ValueError("days must not be negative")
    current, counted = start, 0
    while counted < days:
        current += timedelta(days=1)
        if calendar.is_working_day(current):
            counted += 1
    return current


def add_calendar_days(start: date, days: int) -> date:
    if days < 0:
        raise ValueError("days must not be negative")
    result = start + timedelta(days=days)
    _in_span(result)
    return result


def working_days_between(start: date, end: date, calendar: WorkingDayCalendar = WorkingDayCalendar()) -> int:
    """Working days after `start` up to and including `end` (negative when `end` is earlier)."""
    if end < start:
        return -working_days_between(end, start, calendar)
    return sum(calendar.is_working_day(start + timedelta(days=k)) for k in range(1, (end - start).days + 1))


def local_date(moment: datetime) -> date:
    """The Danish calendar date of an instant (a naive datetime is taken to be UTC)."""
    if moment.tzinfo is None:
        raise ValueError("deadlines need an aware datetime (with a zone)")
    return moment.astimezone(COPENHAGEN).date()


def end_of_day(day: date) -> datetime:
    """The first instant after `day` in Denmark: a deadline on `day` is met by anything before it."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=COPENHAGEN)


# --- rules --------------------------------------------------------------------------------------


class DeadlineUnit(StrEnum):
    WORKING_DAYS = "working-days"
    CALENDAR_DAYS = "calendar-days"


class ClockStart(StrEnum):
    """The pathway event that starts a rule's clock."""

    REFERRAL_RECEIVED = "referral-received"
    TREATMENT_OFFER_ACCEPTED = "treatment-offer-accepted"


class Track(StrEnum):
    """Which pathways a rule applies to."""

    STANDARD = "standard"
    CANCER = "cancer"  # kræftpakke: its own maximum waiting times


class DeadlineRule(_Frozen):
    """One legal deadline. `id` is stable (escalations and stored deadlines refer to it); `name`
    is what a coordinator reads when it is breached."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    name: str = Field(min_length=1)
    amount: int = Field(gt=0, le=366)
    unit: DeadlineUnit
    starts_at: ClockStart
    tracks: frozenset[Track]
    basis: str = ""  # where the rule comes from, for coordinators; not interpreted


class DeadlineRules(_Frozen):
    """A version of the rule set. A pathway keeps the version in force when it started."""

    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,31}$")
    valid_from: date  # pathways started on or after this Danish date get this version
    calendar: WorkingDayCalendar = WorkingDayCalendar()
    rules: tuple[DeadlineRule, ...]

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[DeadlineRule, ...]) -> tuple[DeadlineRule, ...]:
        ids = [r.id for r in rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique within a version")
        return rules

    def rule(self, rule_id: str) -> DeadlineRule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"rule set {self.version} has no rule {rule_id!r}")

    def for_track(self, track: Track, starts_at: ClockStart | None = None) -> tuple[DeadlineRule, ...]:
        return tuple(r for r in self.rules if track in r.tracks and (starts_at is None or r.starts_at == starts_at))


class DeadlineRuleBook(_Frozen):
    """Every version of the rules, for choosing the one in force when a pathway starts."""

    versions: tuple[DeadlineRules, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> DeadlineRuleBook:
        if len({v.version for v in self.versions}) != len(self.versions):
            raise ValueError("rule set versions must be unique")
        if len({v.valid_from for v in self.versions}) != len(self.versions):
            raise ValueError("two rule set versions cannot take effect on the same day")
        return self

    def in_force(self, at: datetime) -> DeadlineRules:
        """The version in force at `at`: the latest whose valid_from is on or before its Danish date."""
        day = local_date(at)
        candidates = [v for v in self.versions if v.valid_from <= day]
        if not candidates:
            raise LookupError(f"no deadline rules in force on {day.isoformat()}")
        return max(candidates, key=lambda v: v.valid_from)

    def get(self, version: str) -> DeadlineRules:
        for rules in self.versions:
            if rules.version == version:
                return rules
        raise KeyError(f"no deadline rule set version {version!r}")


class Deadline(_Frozen):
    """A computed deadline: the rule breached if `due_at` passes, with the version it came from."""

    rule_id: str
    rule_name: str
    rules_version: str
    started_at: datetime
    due_date: date  # the last Danish calendar day that meets the deadline
    due_at: datetime  # the first instant that misses it (start of the next Danish day)

    def is_breached(self, now: datetime) -> bool:
        return now >= self.due_at

    def escalation_reason(self) -> str:
        """What an escalation says about this breach: names the rule and its version, no patient data."""
        due = self.due_date.isoformat()
        return f"deadline breached: {self.rule_name} (rule {self.rule_id}, rules {self.rules_version}, due {due})"


def compute_deadline(rules: DeadlineRules, rule_id: str, started_at: datetime) -> Deadline:
    """The deadline of one rule whose clock started at `started_at` (an aware datetime)."""
    rule = rules.rule(rule_id)
    start_day = local_date(started_at)
    if rule.unit is DeadlineUnit.WORKING_DAYS:
        due = add_working_days(start_day, rule.amount, rules.calendar)
    else:
        due = add_calendar_days(start_day, rule.amount)
    return Deadline(
        rule_id=rule.id,
        rule_name=rule.name,
        rules_version=rules.version,
        started_at=started_at,
        due_date=due,
        due_at=end_of_day(due),
    )


def deadlines_for(rules: DeadlineRules, track: Track, starts_at: ClockStart, at: datetime) -> list[Deadline]:
    """Every deadline of `track` whose clock the event `starts_at`, happening at `at`, starts."""
    return [compute_deadline(rules, rule.id, at) for rule in rules.for_track(track, starts_at)]


def breached(deadlines: list[Deadline], now: datetime) -> list[Deadline]:
    return [d for d in deadlines if d.is_breached(now)]


# --- the rules careflow ships, and loading an operator's file ---------------------------------------

RULES_2026_1 = DeadlineRules(
    version="2026-1",
    valid_from=date(2026, 1, 1),
    rules=(
        DeadlineRule(
            id="patient-informed",
            name="Patient informed within 8 working days of the referral's receipt",
            amount=8,
            unit=DeadlineUnit.WORKING_DAYS,
            starts_at=ClockStart.REFERRAL_RECEIVED,
            tracks=frozenset({Track.STANDARD, Track.CANCER}),
            basis="sundhedsloven: information of the patient after referral",
        ),
        DeadlineRule(
            id="assessment",
            name="Assessment within 30 days of the referral's receipt (udredningsret)",
            amount=30,
            unit=DeadlineUnit.CALENDAR_DAYS,
            starts_at=ClockStart.REFERRAL_RECEIVED,
            tracks=frozenset({Track.STANDARD}),
            basis="sundhedsloven: ret til udredning",
        ),
        DeadlineRule(
            id="cancer-assessment-start",
            name="Cancer pathway: assessment starts within 14 days of the referral's receipt",
            amount=14,
            unit=DeadlineUnit.CALENDAR_DAYS,
            starts_at=ClockStart.REFERRAL_RECEIVED,
            tracks=frozenset({Track.CANCER}),
            basis="sundhedsloven: maximum waiting times for cancer",
        ),
        DeadlineRule(
            id="cancer-treatment-start",
            name="Cancer pathway: treatment within 14 days of the accepted treatment offer",
            amount=14,
            unit=DeadlineUnit.CALENDAR_DAYS,
            starts_at=ClockStart.TREATMENT_OFFER_ACCEPTED,
            tracks=frozenset({Track.CANCER}),
            basis="sundhedsloven: maximum waiting times for cancer",
        ),
    ),
)

DEFAULT_RULE_BOOK = DeadlineRuleBook(versions=(RULES_2026_1,))


def load_rule_book(path: Path) -> DeadlineRuleBook:
    """An operator's rule book from a JSON file (I/O: call it at process start, never in a workflow)."""
    return DeadlineRuleBook.model_validate_json(path.read_bytes())


@lru_cache(maxsize=8)
def rule_book(path: Path | None) -> DeadlineRuleBook:
    """The rule book a deployment configures (setting deadline_rules_path), else the shipped one."""
    return load_rule_book(path) if path else DEFAULT_RULE_BOOK
