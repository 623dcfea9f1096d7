"""Home-care observations to the GP (MedCom HomeCareObservation 1.2): a municipal acute-care team's
measurements at a visit the GP asked for, their modified and retracted versions, and the GP's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from messaging.types.homecare_observation import (
        MODIFIED,
        NEW,
        RETRACTED,
        EarlierMessage,
        HomeCareObservationContent,
    )
    from workflows.declare import AwaitReply, OnEvent, Party, Send, SendContext
    from workflows.examples import synthetic_patient
    from workflows.inputs import (
        HomeCareObservationInput,
        HomeCareObservationTimings,
        ObservationCorrection,
        ObservationRetraction,
        VisitReport,
    )
    from workflows.models import OutboundState, PathwayInput
    from workflows.steps import PathwayWorkflow

HOMECARE_OBSERVATION = MessageKind.HOMECARE_OBSERVATION.value
# The demo directory's acute-care team (careflow acts for it) and a simulated GP (entries from the VANS work).
DEMO_ACUTE_TEAM, DEMO_VISITING_GP = "400000000000002", "100000000000002"

# The pathway's sending steps, and the Provenance activity of the version each sends.
OBSERVATION, MODIFIED_STEP, RETRACTED_STEP = "observation", "modified", "retracted"
ACTIVITY = {OBSERVATION: NEW, MODIFIED_STEP: MODIFIED, RETRACTED_STEP: RETRACTED}
# The events by which the team corrects or retracts the report (POST /flows/{id}/events/{event}).
MODIFY, CANCEL = "modify", "cancel"


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


def _latest(ctx: SendContext) -> HomeCareObservationContent:
    """The report as its latest version has it: the input, corrected by the modifications reported."""
    content = observation_content(ctx.input)
    for report in ctx.reported:
        if report.event == MODIFY:
            correction = ObservationCorrection.model_validate(report.data)
            content = content.model_copy(
                update={
                    "observations": correction.observations,
                    "conclusion": correction.conclusion,
                    "effective": correction.visit_at or content.effective,
                    "gp_initials": correction.gp_initials or content.gp_initials,
                }
            )
    return content


def _version(ctx: SendContext, content: HomeCareObservationContent, activity: str) -> HomeCareObservationContent:
    versions = versions_sent(ctx.sent)
    return HomeCareObservationContent.model_validate(
        {
            **content.model_dump(mode="json"),
            "activity": activity,
            "replaces_header_id": versions[-1].message_header_id,
            "history": history(versions),
        }
    )


def modified_content(ctx: SendContext) -> HomeCareObservationContent:
    """A modified version: the corrected report, whole, revising the latest version sent."""
    correction = ObservationCorrection.model_validate(ctx.event)
    latest = _latest(ctx)
    corrected = latest.model_copy(
        update={
            "observations": correction.observations,
            "conclusion": correction.conclusion,
            "effective": correction.visit_at or latest.effective,
            "gp_initials": correction.gp_initials or latest.gp_initials,
        }
    )
    return _version(ctx, corrected, MODIFIED)


def retracted_content(ctx: SendContext) -> HomeCareObservationContent:
    """The retraction: the latest version once more, its conclusion the reason (MedCom), removing it."""
    reason = ObservationRetraction.model_validate(ctx.event).reason
    return _version(ctx, _latest(ctx).model_copy(update={"conclusion": reason}), RETRACTED)


def _refusal(ctx: SendContext, model: type[BaseModel]) -> str | None:
    versions = versions_sent(ctx.sent)
    if not versions:
        return "the observation has not been sent yet"
    if any(r.event == CANCEL for r in ctx.reported) or any(o.step == RETRACTED_STEP for o in ctx.sent):
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


# --- the pathway -----------------------------------------------------------------------------------


@workflow.defn
class HomeCareObservationPathway(PathwayWorkflow):
    """Home-care observations to the GP (MedCom HomeCareObservation 1.2). The GP asked the municipal
    acute-care team to visit a patient; careflow sends, in the team's name, the team's measurements and
    assessment to that GP, and follows the report until the GP answers.

    Sends: the HomeCareObservation (DiagnosticReport HomeCareReport, its Observations) to the GP. Once it
    is acknowledged, the team may report `modify` (the corrected report, whole) any number of times:
    each sends a modified version (activity modified-message, revising the latest version); and `cancel`
    (with the reason): a retraction (retract-message, the reason in the conclusion), after which the
    pathway ends. Every version has MedCom's resend rule on its acknowledgement and carries the
    Provenances of the versions before it. Awaits: the GP's answer, a CareCommunication (category
    examination-results), within `answer_deadline` (4 hours); late, it escalates and keeps waiting.
    A coordinator's cancel sends nothing (the team retracts with `cancel`)."""

    name = "home-care-observation"
    title, title_da = "Home-care observations to the GP", "Hjemmeplejeobservationer til egen læge"
    input_model = HomeCareObservationInput
    timings_model = HomeCareObservationTimings
    parties = (
        Party("team", "municipal acute-care team", field="team_sor", kind="municipality"),
        Party("gp", "GP who asked for the visit", field="gp_sor", kind="gp"),
    )
    acting_for, counterpart = "team", "gp"
    cancellation = None
    steps = (
        Send(OBSERVATION, HOMECARE_OBSERVATION, to="gp", content=observation_content),
        AwaitReply("answer", MessageKind.CARE_COMMUNICATION, sender="gp", deadline="answer_deadline"),
    )
    alongside = (
        OnEvent(
            MODIFIED_STEP,
            MODIFY,
            HOMECARE_OBSERVATION,
            to="gp",
            content=modified_content,
            title="observations corrected",
            after=OBSERVATION,
            refuse=refuse_modification,
        ),
        OnEvent(
            RETRACTED_STEP,
            CANCEL,
            HOMECARE_OBSERVATION,
            to="gp",
            content=retracted_content,
            title="report retracted",
            after=OBSERVATION,
            ends=True,
            refuse=refuse_retraction,
        ),
    )

    @classmethod
    def example(cls, rng: Any) -> dict[str, Any]:  # noqa: ANN401
        return example_input(rng)
