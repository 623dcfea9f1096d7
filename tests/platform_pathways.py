"""Pathways only the tests declare (loaded through the `pathway_modules` setting, like a region's own):
a consultation that branches on the receiver's answer and ends on a clinician's event, a dialogue
that an inbound CareCommunication starts, a booking whose result deadline counts from the
appointment, a stay whose updates are events reported any number of times beside a dialogue, and a
referral the receiver may forward elsewhere, with legal deadlines."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import CareCommunicationContent, MessageKind, ParsedMessage
    from workflows.declare import (
        AwaitEvent,
        AwaitOneOf,
        AwaitReply,
        OnEvent,
        OnMessage,
        Outcome,
        Party,
        Send,
        SendContext,
        SendOnEvent,
        StartOn,
    )
    from workflows.models import PathwayInput, PathwayStart, Timings
    from workflows.steps import PathwayWorkflow

SOR = Field(pattern=r"^\d{6,18}$")


class ConsultationInput(PathwayStart):
    gp_sor: str = SOR
    hospital_sor: str = SOR
    reason: str = Field(min_length=1)


class ConsultationTimings(Timings):
    decision_deadline: timedelta = timedelta(days=8)
    seen_deadline: timedelta = timedelta(days=30)


def summary(pathway_input: PathwayInput, event: dict[str, Any]) -> CareCommunicationContent:
    return CareCommunicationContent(
        communication_id=pathway_input.flow_id,
        text=str(event.get("text", "Patienten er set.")),
        service_request_id=pathway_input.flow_id,
    )


@workflow.defn
class ConsultationPathway(PathwayWorkflow):
    """A consultation: the request goes to the hospital, which books it or declines; once the
    clinician reports the patient seen, a summary goes back."""

    name = "consultation"
    title, title_da = "Consultation", "Konsultation"
    input_model = ConsultationInput
    timings_model = ConsultationTimings
    parties = (
        Party("requester", "GP", field="gp_sor"),
        Party("performer", "hospital", field="hospital_sor", kind="hospital-department"),
    )
    steps = (
        Send("request", MessageKind.REFERRAL, to="performer"),
        AwaitOneOf(
            "decision",
            {
                "booked": Outcome(MessageKind.APPOINTMENT),
                "declined": Outcome(MessageKind.CANCELLATION, escalate=True, end=True),
            },
            sender="performer",
            deadline="decision_deadline",
        ),
        SendOnEvent(
            "summary",
            event="patient-seen",
            title="patient seen",
            message=MessageKind.CARE_COMMUNICATION,
            to="performer",
            roles=("clinician",),
            deadline="seen_deadline",
            content=summary,
        ),
    )

    @classmethod
    def example(cls, rng):  # noqa: ANN001, ANN206
        from workflows.examples import DEMO_GP, DEMO_HOSPITAL, synthetic_patient

        return {
            "patient": synthetic_patient(rng),
            "gp_sor": DEMO_GP,
            "hospital_sor": DEMO_HOSPITAL,
            "reason": "Vurdering",
        }


class DialogueInput(PathwayStart):
    gp_sor: str = SOR
    hospital_sor: str = SOR


def dialogue_input(parsed: ParsedMessage) -> dict[str, Any]:
    patient = parsed.patient
    return {
        "patient": {
            "cpr": patient.cpr if patient else "",
            "given_name": patient.given_name if patient else "",
            "family_name": patient.family_name if patient else "",
        },
        "gp_sor": parsed.receiver.sor if parsed.receiver else "",
        "hospital_sor": parsed.sender.sor if parsed.sender else "",
    }


def answer(pathway_input: PathwayInput, event: dict[str, Any]) -> CareCommunicationContent:
    return CareCommunicationContent(
        communication_id=pathway_input.flow_id, text=str(event.get("text", "Tak, vi følger op."))
    )


@workflow.defn
class DialogueTestPathway(PathwayWorkflow):
    """A hospital writes to the GP unprompted (CareCommunication): a dialogue starts, and the GP's
    answer goes back once a clinician reports it."""

    name = "dialogue"
    title, title_da = "Dialogue", "Korrespondance"
    input_model = DialogueInput
    api_start = False
    cancellation = None
    parties = (Party("requester", "GP", field="gp_sor"), Party("performer", "hospital", field="hospital_sor"))
    starts = (StartOn(MessageKind.CARE_COMMUNICATION, input_from=dialogue_input),)
    steps = (
        SendOnEvent(
            "answer",
            event="answered",
            title="answer written",
            message=MessageKind.CARE_COMMUNICATION,
            to="performer",
            content=answer,
        ),
    )


class BookingTimings(Timings):
    appointment_deadline: timedelta = timedelta(days=30)
    result_deadline: timedelta = timedelta(days=10)


@workflow.defn
class BookingPathway(PathwayWorkflow):
    """A referral whose test result is due ten days after the appointment: a rescheduled
    appointment re-arms that deadline."""

    name = "booking"
    title, title_da = "Booking", "Booking"
    input_model = ConsultationInput
    timings_model = BookingTimings
    parties = (Party("requester", "GP", field="gp_sor"), Party("performer", "hospital", field="hospital_sor"))
    steps = (
        Send("referral", MessageKind.REFERRAL, to="performer"),
        AwaitReply("appointment", MessageKind.APPOINTMENT, sender="performer", deadline="appointment_deadline"),
        AwaitReply(
            "result",
            MessageKind.TREATMENT_PLAN,
            sender="performer",
            deadline="result_deadline",
            deadline_from="appointment",
        ),
    )


class StayInput(PathwayStart):
    hospital_sor: str = SOR
    municipality_sor: str = SOR


class StayTimings(Timings):
    answer_deadline: timedelta = timedelta(days=2)


def stay_update(ctx: SendContext) -> CareCommunicationContent:
    """Each update names how many messages went before it: what the content builder sees is tested."""
    if len(str(ctx.event.get("text", ""))) > 100:
        raise ValueError("an update is at most 100 characters")
    return CareCommunicationContent(
        communication_id=ctx.input.flow_id,
        text=f"{ctx.event.get('text', 'update')} after {len(ctx.sent)} sent, {len(ctx.received)} received",
    )


def no_end_before_an_update(ctx: SendContext) -> str | None:
    return None if any(r.event == "update" for r in ctx.reported) else "a stay ends after an update"


@workflow.defn
class StayTestPathway(PathwayWorkflow):
    """A hospital stay told to the municipality: updates any number of times, the municipality's
    questions answered by an update within two days, until the stay ends or is closed."""

    name = "stay"
    title, title_da = "Stay", "Ophold"
    input_model = StayInput
    timings_model = StayTimings
    cancellation = None
    parties = (
        Party("requester", "hospital", field="hospital_sor"),
        Party("performer", "municipality", field="municipality_sor"),
    )
    steps = (
        Send(
            "notice",
            MessageKind.CARE_COMMUNICATION,
            to="performer",
            content=lambda i: CareCommunicationContent(communication_id=i.flow_id, text="indlagt"),
        ),
        AwaitEvent("closed", event="close", title="stay closed"),
    )
    alongside = (
        OnEvent("update", event="update", message=MessageKind.CARE_COMMUNICATION, to="performer", content=stay_update),
        OnEvent(
            "end",
            event="end",
            message=MessageKind.CARE_COMMUNICATION,
            to="performer",
            content=stay_update,
            after="notice",
            ends=True,
            refuse=no_end_before_an_update,
        ),
        OnMessage(
            "question", MessageKind.CARE_COMMUNICATION, sender="performer", answer="update", deadline="answer_deadline"
        ),
    )


class ForwardingInput(PathwayStart):
    gp_sor: str = SOR
    hospital_sor: str = SOR
    reason: str = "Vurdering"
    track: str = "standard"


@workflow.defn
class ForwardingTestPathway(PathwayWorkflow):
    """A referral the receiver may forward to another hospital (which then decides), with the legal
    deadline for informing the patient counted from the referral's receipt."""

    name = "forwarding"
    title, title_da = "Forwarding", "Videresendelse"
    input_model = ForwardingInput
    track_field = "track"
    parties = (Party("requester", "GP", field="gp_sor"), Party("performer", "hospital", field="hospital_sor"))
    steps = (
        Send("referral", MessageKind.REFERRAL, to="performer"),
        AwaitOneOf(
            "triage",
            {
                "booked": Outcome(MessageKind.APPOINTMENT),
                "forwarded": Outcome(MessageKind.REFERRAL, when="forwarded", reassign="performer", again=True),
            },
            sender="performer",
            legal=("patient-informed", "cancer-assessment-start"),
        ),
    )
