"""Home-care observations to the GP (MedCom HomeCareObservation 1.2): a municipal acute-care team's
measurements at a visit the GP asked for, their modified and retracted versions, and the GP's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from messaging.types.homecare_observation import (
        MODIFIED,
        NEW,
        RETRACTED,
        EarlierMessage,
        HomeCareMeasurement,
        HomeCareObservationContent,
        ObservationAuthor,
    )
    from workflows.examples import synthetic_patient
    from workflows.models import OutboundState, PathwayInput, PathwayStart

if TYPE_CHECKING:
    from workflows.declare import SendContext

HOMECARE_OBSERVATION = MessageKind.HOMECARE_OBSERVATION.value
# The demo directory's acute-care team (careflow acts for it) and a simulated GP (entries from the VANS work).
DEMO_ACUTE_TEAM, DEMO_VISITING_GP = "400000000000002", "100000000000002"

# The pathway's sending steps, and the Provenance activity of the version each sends.
OBSERVATION, MODIFIED_STEP, RETRACTED_STEP = "observation", "modified", "retracted"
ACTIVITY = {OBSERVATION: NEW, MODIFIED_STEP: MODIFIED, RETRACTED_STEP: RETRACTED}


class VisitReport(BaseModel):
    """The acute-care team's report of a visit the GP asked for (the pathway's data, without the patient)."""

    team_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the municipal acute-care team")
    gp_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the GP practice that asked for the visit")
    gp_ydernummer: str = Field(pattern=r"^\d{6}$", description="the practice's provider number (ydernummer)")
    gp_initials: str = Field(min_length=1, max_length=20, description="initials of the GP who asked for the visit")
    visit_at: datetime = Field(description="when the observations were made")
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
    visit_at: datetime | None = None
    gp_initials: str | None = Field(default=None, min_length=1, max_length=20)


class ObservationRetraction(BaseModel):
    """A `cancel` event's data: why the report is void (wrong patient, wrong receiver); MedCom puts the
    reason in the report's conclusion."""

    reason: str = Field(min_length=1, max_length=500)


def observation_content(pathway_input: PathwayInput) -> HomeCareObservationContent:
    """The first version of the report, from the pathway's input. The report id is the flow's."""
    start = VisitReport.model_validate(pathway_input.data)
    return HomeCareObservationContent(
        report_id=pathway_input.flow_id,
        effective=start.visit_at,
        observations=start.observations,
        conclusion=start.conclusion,
        gp_ydernummer=start.gp_ydernummer,
        gp_initials=start.gp_initials,
        author=start.author,
        restricted=start.restricted,
    )


def versions_sent(sent: tuple[OutboundState, ...] | list[OutboundState]) -> list[OutboundState]:
    """The report's versions that went out, in order."""
    return [o for o in sent if o.kind == HOMECARE_OBSERVATION and o.step in ACTIVITY and o.first_sent_at is not None]


def history(versions: list[OutboundState]) -> list[dict[str, Any]]:
    """The Provenance of each earlier version, as it was in its own message."""
    return [
        EarlierMessage(
            message_header_id=version.message_header_id,
            activity=ACTIVITY[version.step],
            at=version.first_sent_at,
            previous_header_id=versions[i - 1].message_header_id if i else None,
        ).model_dump(mode="json")
        for i, version in enumerate(versions)
    ]


def modified_content(ctx: SendContext) -> HomeCareObservationContent:
    """A modified version: the corrected report, revising the latest version sent."""
    correction = ObservationCorrection.model_validate(ctx.event)
    versions = versions_sent(ctx.sent)
    first = observation_content(ctx.input)
    return HomeCareObservationContent.model_validate(
        {
            **first.model_dump(mode="json"),
            "observations": [m.model_dump(mode="json") for m in correction.observations],
            "conclusion": correction.conclusion,
            "effective": correction.visit_at or first.effective,
            "gp_initials": correction.gp_initials or first.gp_initials,
            "activity": MODIFIED,
            "replaces_header_id": versions[-1].message_header_id,
            "history": history(versions),
        }
    )


def retracted_content(ctx: SendContext) -> HomeCareObservationContent:
    """The retraction: the report once more, its conclusion the reason, removing the latest version.
    (It carries the first version's observations, as MedCom's example does: the whole report is void.)"""
    reason = ObservationRetraction.model_validate(ctx.event).reason
    versions = versions_sent(ctx.sent)
    return HomeCareObservationContent.model_validate(
        {
            **observation_content(ctx.input).model_dump(mode="json"),
            "conclusion": reason,
            "activity": RETRACTED,
            "replaces_header_id": versions[-1].message_header_id,
            "history": history(versions),
        }
    )


def _refusal(ctx: SendContext, model: type[BaseModel]) -> str | None:
    versions = versions_sent(ctx.sent)
    if not versions:
        return "the observation has not been sent yet"
    if any(o.step == RETRACTED_STEP for o in ctx.sent if o.kind == HOMECARE_OBSERVATION):
        return "the report has been retracted"
    try:
        model.model_validate(ctx.event)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in err.errors())
        return f"the event's data does not fit: {problems}"
    return None


def refuse_modification(ctx: SendContext) -> str | None:
    return _refusal(ctx, ObservationCorrection)


def refuse_retraction(ctx: SendContext) -> str | None:
    return _refusal(ctx, ObservationRetraction)


def example_input(rng: Any) -> dict[str, Any]:  # noqa: ANN401
    """A synthetic visit: early warning signs (TOBS), as the acute-care team measures them."""
    temperature = round(rng.uniform(36.8, 39.6), 1)
    pulse, respiration = rng.randint(62, 118), rng.randint(12, 26)
    return {
        "patient": synthetic_patient(rng),
        "team_sor": DEMO_ACUTE_TEAM,
        "gp_sor": DEMO_VISITING_GP,
        "gp_ydernummer": "061654",
        "gp_initials": rng.choice(["O.K.M.", "L.H.", "A.B.J."]),
        "visit_at": (datetime.now(UTC) - timedelta(minutes=rng.randint(5, 90))).isoformat(),
        "observations": [
            {"code": "NPU08676", "display": "Pt—Legeme; temp.", "value": temperature, "unit": "°C"},
            {"code": "NPU21692", "display": "Hjerte—Systole; frekv.", "value": pulse, "unit": "1/min"},
            {"code": "MCS88122", "display": "Pt—Respiration; frekvens", "value": respiration, "unit": "1/min"},
            {"code": "MCS88125", "display": "Pt—TOBS score", "value": rng.randint(0, 6)},
        ],
        "conclusion": rng.choice(
            ["Påvirket almentilstand, feber.", "Let forpustet, ingen smerter.", "Vågen og klar, spiser dårligt."]
        ),
        "author": {"name": rng.choice(["Mia", "Jonas", "Sara"]), "phone": "+45 70000000"},
    }
