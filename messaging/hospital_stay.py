"""A hospital stay as MedCom's HospitalNotification codes see it: which notification each reported
event sends (STIN/STAA, STOR, SLOR, SLHJ, MORS, RE_xx, AN_xx), the Encounter it describes, the
Provenance history it carries, and which reports the standard's governance refuses.

Pure functions over the stay's reports, so a pathway can call them in its workflow (deterministic)
and tests can check every code against MedCom's table (MEDCOM-FACTS §3) without a server.

Choices where the standard leaves room (said in the README too):
- only the latest notice still in force can be corrected (RE_) or cancelled (AN_): that keeps the
  Encounter status of each RE_/AN_ code the one MedCom's table gives, and after SLHJ only SLHJ can be;
- a correction corrects the time of that notice (the department is the sender's, fixed per stay);
- entity.what of RE_/AN_ is the latest message that stated the notice (itself, or its last RE_);
  of a new event, the latest message of the stay;
- SLHJ and MORS carry no leave period (the leave was notified and ended); a second leave's STOR
  carries only its own start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from messaging.types.hospital_notification import EarlierNotification, HospitalNotificationContent

# The events a hospital's system reports on a running stay (the admission starts the pathway).
LEAVE_START, LEAVE_END, DISCHARGE, DEATH, REVISE, CANCEL = (
    "leave-start",
    "leave-end",
    "discharge",
    "death",
    "revise",
    "cancel",
)
ADMISSION = "admission"
EVENTS = (LEAVE_START, LEAVE_END, DISCHARGE, DEATH, REVISE, CANCEL)
# A report may not name a moment this far in the future: notifications go at the physical event,
# never at a future-dated registration (MedCom's governance), allowing for clocks that differ a little.
CLOCK_TOLERANCE = timedelta(minutes=5)

Status = Literal["in-progress", "onleave", "finished", "entered-in-error"]


class StayAdmission(BaseModel):
    """How the stay started: what the pathway's input says about the admission."""

    admitted_at: datetime
    acute_ambulant: bool = False  # STAA (EMER) instead of STIN (IMP)
    encounter_id: str
    episode_of_care_id: str
    report_of_admission: bool = False


class EventData(BaseModel):
    """What a report of a stay event carries (all optional): when it happened (default: when
    reported) and, for a correction, the corrected time."""

    at: datetime | None = Field(default=None, description="when it happened (ISO 8601 with zone); default: now")
    reason: str = ""


@dataclass(frozen=True)
class Notice:
    """One notice of the stay in force: the event it notified and the Encounter after it."""

    event: str  # admission | leave-start | leave-end | discharge | death
    activity: str  # its base activity code (admit-inpatient, start-leave-inpatient, ...)
    last_header: str  # the latest message that stated it (the original or its last correction)
    status: Status
    encounter_class: str
    start: datetime
    end: datetime | None
    leave_start: datetime | None
    leave_end: datetime | None
    deceased: bool
    current_activity: str  # "current activity" of MedCom's table (MORS keeps it)


@dataclass(frozen=True)
class Sent:
    """A notification already sent: its header, when it first went, and the report it answered."""

    message_header_id: str
    sent_at: datetime
    event: str
    data: dict[str, Any]
    reported_at: datetime | None = None  # when the report was taken: its time unless it names one (default: sent_at)


@dataclass(frozen=True)
class Planned:
    """The notification a report sends: its MedCom code (e.g. RE_STOR) and content."""

    code: str
    content: HospitalNotificationContent
    ends_stay: bool  # AN_STIN/AN_STAA: nothing is left to notify


class Refused(ValueError):
    """The report does not fit the stay (the reason names the rule; never patient data)."""


_CODES = {
    "admit-inpatient": "STIN",
    "admit-emergency": "STAA",
    "start-leave-inpatient": "STOR",
    "end-leave-inpatient": "SLOR",
    "discharge-inpatient-home": "SLHJ",
    "discharge-emergency-home": "SLHJ",
}


def _at(data: dict[str, Any], now: datetime) -> datetime:
    try:
        parsed = EventData.model_validate(data or {})
    except ValidationError as err:
        raise Refused("the report's 'at' must be an ISO 8601 date-time with a zone") from err
    at = parsed.at or now
    if at.tzinfo is None:
        raise Refused("the report's 'at' needs a time zone")
    if at > now + CLOCK_TOLERANCE:
        raise Refused("a notification is sent when the event happens, never for a future-dated registration")
    return at


class Stay:
    """The stay after the notifications sent so far; `plan` says what the next report sends."""

    def __init__(self, admission: StayAdmission, sent: list[Sent], sender_sor: str | None = None) -> None:
        self.admission = admission
        self.sender_sor = sender_sor
        self.history: list[EarlierNotification] = []
        self.notices: list[Notice] = []
        if not sent:
            return
        first, *later = sent
        self._record(self._admit(first.message_header_id), first, None, "revision")
        for report in later:
            self._apply(self.plan(report.event, report.data, report.reported_at or report.sent_at), report)

    # ----- what the stay is now ----------------------------------------------------------------

    @property
    def current(self) -> Notice | None:
        return self.notices[-1] if self.notices else None

    @property
    def last_header(self) -> str | None:
        return self.history[-1].message_header_id if self.history else None

    @property
    def ended(self) -> bool:
        """Cancelled (AN_STIN/AN_STAA): nothing more can be notified."""
        return bool(self.history) and not self.notices

    @property
    def status(self) -> str:
        return self.current.status if self.current else "entered-in-error"

    # ----- the admission -----------------------------------------------------------------------

    def _admit(self, header_id: str) -> Notice:
        a = self.admission
        activity = "admit-emergency" if a.acute_ambulant else "admit-inpatient"
        return Notice(
            event=ADMISSION,
            activity=activity,
            last_header=header_id,
            status="in-progress",
            encounter_class="EMER" if a.acute_ambulant else "IMP",
            start=a.admitted_at,
            end=None,
            leave_start=None,
            leave_end=None,
            deceased=False,
            current_activity=activity,
        )

    def admission_content(self) -> HospitalNotificationContent:
        """The first notification (STIN or STAA): one Provenance, no history."""
        notice = self._admit("")
        return self._content(notice, notice.activity, None, "revision", report=self.admission.report_of_admission)

    # ----- later reports -------------------------------------------------------------------------

    def plan(self, event: str, data: dict[str, Any], now: datetime) -> Planned:
        """The notification a report of `event` sends now; Refused if the stay does not allow it."""
        current = self.current
        if current is None:
            raise Refused("the admission was cancelled: nothing more can be notified")
        if event == REVISE:
            return self._revise(current, _at(data, now))
        if event == CANCEL:
            return self._cancel(current)
        at = _at(data, now)
        if at < current.start:
            raise Refused("the event cannot happen before the hospital stay started")
        if current.deceased:
            raise Refused("the patient has died: only the death notice can be corrected or cancelled")
        if current.status == "finished":
            raise Refused("the stay has already ended: only its discharge notice can be corrected or cancelled")
        if event == LEAVE_START:
            if current.encounter_class != "IMP" or current.status != "in-progress":
                raise Refused("a leave starts from an inpatient stay in progress")
            notice = replace(
                current,
                event=LEAVE_START,
                activity="start-leave-inpatient",
                status="onleave",
                leave_start=at,
                leave_end=None,
                current_activity="start-leave-inpatient",
            )
        elif event == LEAVE_END:
            if current.status != "onleave":
                raise Refused("a leave can only end while the patient is on leave")
            if current.leave_start and at < current.leave_start:
                raise Refused("a leave cannot end before it started")
            notice = replace(
                current, event=LEAVE_END, activity="end-leave-inpatient", status="in-progress", leave_end=at
            )
            notice = replace(notice, current_activity=notice.activity)
        elif event == DISCHARGE:
            if current.status == "onleave":
                raise Refused("a discharge home ends a stay in progress: report the end of the leave first")
            kind = "inpatient" if current.encounter_class == "IMP" else "emergency"
            activity = f"discharge-{kind}-home"
            notice = replace(
                current,
                event=DISCHARGE,
                activity=activity,
                status="finished",
                end=at,
                leave_start=None,
                leave_end=None,
                current_activity=activity,
            )
        elif event == DEATH:
            notice = replace(
                current,
                event=DEATH,
                activity=current.current_activity,
                status="finished",
                end=at,
                leave_start=None,
                leave_end=None,
                deceased=True,
            )
        else:
            raise Refused(f"unknown stay event {event!r}")
        code = "MORS" if event == DEATH else _CODES[notice.activity]
        return Planned(code, self._content(notice, notice.activity, self.last_header, "revision"), False)

    def _revise(self, current: Notice, at: datetime) -> Planned:
        """RE_xx: the latest notice again, with its time corrected (its status as before)."""
        field = {
            ADMISSION: "start",
            LEAVE_START: "leave_start",
            LEAVE_END: "leave_end",
            DISCHARGE: "end",
            DEATH: "end",
        }[current.event]
        corrected = replace(current, **{field: at})
        if corrected.end and corrected.end < corrected.start:
            raise Refused("the corrected time would end the stay before it started")
        leave_start, leave_end = corrected.leave_start, corrected.leave_end
        if leave_start and (leave_start < corrected.start or (leave_end and leave_end < leave_start)):
            raise Refused("the corrected time does not fit the stay's other times")
        if current.event == DEATH:
            activity, code = current.activity, "RE_MORS"  # MORS keeps the current activity
        else:
            activity, code = f"revise-{current.activity}", f"RE_{_CODES[current.activity]}"
        return Planned(code, self._content(corrected, activity, current.last_header, "revision"), False)

    def _cancel(self, current: Notice) -> Planned:
        """AN_xx: the latest notice is withdrawn; the Encounter is as it was before it (AN_STIN/AN_STAA:
        entered-in-error)."""
        if current.event == ADMISSION:
            cancelled = replace(current, status="entered-in-error")
            activity = f"cancel-{current.activity}"
            return Planned(
                f"AN_{_CODES[current.activity]}",
                self._content(cancelled, activity, current.last_header, "removal"),
                True,
            )
        before = self.notices[-2]
        if current.event == DEATH:
            content = self._content(before, current.activity, current.last_header, "removal", deceased=False)
            return Planned("AN_MORS", content, False)
        activity = f"cancel-{current.activity}"
        return Planned(
            f"AN_{_CODES[current.activity]}", self._content(before, activity, current.last_header, "removal"), False
        )

    # ----- bookkeeping -----------------------------------------------------------------------------

    def _apply(self, planned: Planned, sent: Sent) -> None:
        content, header = planned.content, sent.message_header_id
        code = planned.code
        if code.startswith("AN_"):
            self.notices.pop()
        elif code.startswith("RE_"):
            self.notices[-1] = replace(
                self.notices[-1],
                last_header=header,
                start=content.start,
                end=content.end,
                leave_start=content.leave_start,
                leave_end=content.leave_end,
            )
        else:
            event = {"MORS": DEATH, "STOR": LEAVE_START, "SLOR": LEAVE_END, "SLHJ": DISCHARGE}[code]
            current = self.notices[-1]
            self.notices.append(
                Notice(
                    event=event,
                    activity=content.activity,
                    last_header=header,
                    status=content.encounter_status,
                    encounter_class=content.encounter_class,
                    start=content.start,
                    end=content.end,
                    leave_start=content.leave_start,
                    leave_end=content.leave_end,
                    deceased=bool(content.deceased),
                    current_activity=current.current_activity if code == "MORS" else content.activity,
                )
            )
        self.history.append(
            EarlierNotification(
                message_header_id=header,
                activity=content.activity,
                sent_at=sent.sent_at,
                previous_header_id=content.previous_header_id,
                entity_role=content.entity_role,
                agent_sor=self.sender_sor,
            )
        )

    def _record(self, notice: Notice, sent: Sent, previous: str | None, role: str) -> None:
        self.notices.append(notice)
        self.history.append(
            EarlierNotification(
                message_header_id=sent.message_header_id,
                activity=notice.activity,
                sent_at=sent.sent_at,
                previous_header_id=previous,
                entity_role=role,  # type: ignore[arg-type]
                agent_sor=self.sender_sor,
            )
        )

    def _content(
        self,
        notice: Notice,
        activity: str,
        previous: str | None,
        role: str,
        *,
        deceased: bool | None = None,
        report: bool = False,
    ) -> HospitalNotificationContent:
        died = notice.deceased if deceased is None else deceased
        return HospitalNotificationContent(
            activity=activity,
            encounter_id=self.admission.encounter_id,
            encounter_status=notice.status,
            encounter_class=notice.encounter_class,  # type: ignore[arg-type]
            start=notice.start,
            end=notice.end,
            episode_of_care_id=self.admission.episode_of_care_id,
            leave_start=notice.leave_start,
            leave_end=notice.leave_end,
            # Patient.deceased: true on MORS (and RE_MORS), false on AN_MORS; absent otherwise
            deceased=True if died else (False if deceased is False else None),
            previous_header_id=previous,
            entity_role=role,  # type: ignore[arg-type]
            history=list(self.history),
            report_of_admission=report,
        )
