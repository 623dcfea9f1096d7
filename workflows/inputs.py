"""The shipped pathways' input, event and timings models: pure data, passed through the workflow
sandbox (workers/runner.py: by the worker's runner and by the strict one the replay tests run).

In the strict sandbox a pathway module re-runs for every workflow instance, and a pydantic model
declared there is built again each time (6 % of the worker's CPU in round 2's profile;
benchmarks/RESULTS.md round 3 measured 17 % less CPU per sandboxed instance with them here). Since
round 4 the worker passes the pathway modules through too; these stay here, built once either way.
The pathway modules re-export them under their old names.
Nothing here may do I/O or read the clock on a workflow's path: these models run unsandboxed (the one
clock read, HospitalStayInput's validator, runs only where a flow is started, in the API).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from messaging.hospital_stay import CLOCK_TOLERANCE
from messaging.types.homecare_observation import HomeCareMeasurement, ObservationAuthor
from workflows.models import PathwayStart, Timings

# --- referral (workflows/referral.py) --------------------------------------------------------------


class ReferralInput(PathwayStart):
    """A clinician's referral of a patient to another organisation."""

    referring_sor: str = Field(description="SOR code of the referring organisation", pattern=r"^\d{6,18}$")
    receiving_sor: str = Field(description="SOR code of the receiving organisation", pattern=r"^\d{6,18}$")
    lab_sor: str | None = Field(
        default=None,
        description="SOR code of the lab that reports the test result (default: the directory's lab)",
        pattern=r"^\d{6,18}$",
    )
    reason: str = Field(min_length=1, max_length=2000)
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"


# --- referral on MedCom's draft model (workflows/medcom_referral.py) --------------------------


class MedcomReferralInput(PathwayStart):
    """A clinician's referral of a patient to another organisation, on MedCom's draft model."""

    referring_sor: str = Field(description="SOR code of the referring organisation", pattern=r"^\d{6,18}$")
    receiving_sor: str = Field(description="SOR code of the receiving organisation", pattern=r"^\d{6,18}$")
    reason: str = Field(min_length=1, max_length=2000)
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"
    track: Literal["standard", "cancer"] = Field(
        default="standard", description="cancer: the cancer pathway's maximum waiting times apply"
    )


class MedcomReferralTimings(Timings):
    question_answer_deadline: timedelta = timedelta(days=2)  # a receiver's question about the referral


# --- hospital stay (workflows/hospital_notification.py) ------------------------------------------


class HospitalStayInput(PathwayStart):
    """A patient admitted to a hospital department: the start of the stay's notifications."""

    hospital_sor: str = Field(
        pattern=r"^\d{6,18}$", description="SOR code of the hospital department (careflow sends in its name)"
    )
    municipality_sor: str | None = Field(
        default=None,
        pattern=r"^\d{6,18}$",
        description="SOR code of the patient's home municipality (default: the directory's municipality)",
    )
    admitted_at: datetime = Field(description="when the patient arrived at the hospital (ISO 8601 with a zone)")
    acute_ambulant: bool = Field(default=False, description="acute ambulant (STAA) instead of admitted (STIN)")
    report_of_admission: bool = Field(
        default=False, description="ask the municipality for a report of admission (indlæggelsesrapport)"
    )

    @field_validator("admitted_at")
    @classmethod
    def _at_the_event(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("admitted_at needs a time zone")
        # MedCom: notifications go at the patient's physical attendance, never for a future-dated registration
        if value > datetime.now(UTC) + CLOCK_TOLERANCE:
            raise ValueError("admitted_at is in the future: notify the admission when the patient arrives")
        return value


class HospitalStayTimings(Timings):
    """MedCom's resend rule (30 minutes, 2 resends) and the pathway's own deadlines."""

    # MedCom: HospitalNotifications are sent automatically and in real time, at the event. A report
    # of an event this much later than it happened still goes, and escalates.
    report_within: timedelta = timedelta(minutes=15)
    # The municipality's CareCommunication gets an answer within a day (careflow's choice: MedCom
    # sets no answer time; CareCommunication is never for acute matters).
    answer_deadline: timedelta = timedelta(hours=24)


# --- home-care observation (workflows/home_care_observation.py) ----------------------------------


class VisitReport(BaseModel):
    """The acute-care team's report of a visit the GP asked for (the pathway's data, without the patient)."""

    team_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the municipal acute-care team")
    gp_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the GP practice that asked for the visit")
    gp_ydernummer: str = Field(pattern=r"^\d{6}$", description="the practice's provider number (ydernummer)")
    gp_initials: str = Field(min_length=1, max_length=20, description="initials of the GP who asked for the visit")
    visit_at: AwareDatetime = Field(description="when the observations were made (with its UTC offset)")
    observations: list[HomeCareMeasurement] = Field(min_length=1, max_length=50)
    conclusion: str = Field(default="", max_length=5000, description="the clinical comment (overall assessment)")
    author: ObservationAuthor | None = None
    restricted: bool = Field(default=False, description="the patient refuses that the results are shared")


class HomeCareObservationInput(PathwayStart, VisitReport):
    """What starts the pathway: the patient and the visit's report."""


class ObservationCorrection(BaseModel):
    """A `modify` event's data: the corrected report, whole (it replaces the version before it)."""

    observations: list[HomeCareMeasurement] = Field(min_length=1, max_length=50)
    conclusion: str = Field(default="", max_length=5000)
    visit_at: AwareDatetime | None = None
    gp_initials: str | None = Field(default=None, min_length=1, max_length=20)


class ObservationRetraction(BaseModel):
    """A `cancel` event's data: why the report is void (wrong patient, wrong receiver); MedCom puts the
    reason in the report's conclusion."""

    reason: str = Field(min_length=1, max_length=500)


class HomeCareObservationTimings(Timings):
    """The GP's answer is due within hours: the visit was acute. MedCom sets no such deadline; this is
    careflow's, per deployment: CAREFLOW_PATHWAYS__HOME_CARE_OBSERVATION__ANSWER_DEADLINE."""

    answer_deadline: timedelta = timedelta(hours=4)
