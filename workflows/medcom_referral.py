"""The referral on MedCom's draft referral model: henvisning → visitation → booking → behandlingsplan."""

from __future__ import annotations

import uuid

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging import referral_draft as draft
    from messaging.model import MessageKind
    from messaging.types.care_communication import REGARDING_REFERRAL, CareCommunicationContent
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
    )
    from workflows.examples import DEMO_GP, DEMO_HOSPITAL, synthetic_patient
    from workflows.inputs import MedcomReferralInput, MedcomReferralTimings
    from workflows.models import InboundMessageSignal
    from workflows.steps import PathwayWorkflow

QUESTION_THREADS = uuid.UUID("5d0f7a4e-2b1c-4e8a-9c3d-7f6e5a4b3c21")


def _update(ctx: SendContext) -> draft.ReferralRequestContent:
    data = ctx.input.data
    return draft.ReferralRequestContent(
        service_request_id=ctx.input.flow_id,
        reason=ctx.event.get("reason") or data["reason"],
        priority=ctx.event.get("priority") or data.get("priority", "routine"),
        track=data.get("track", "standard"),
        note=ctx.event.get("note", ""),
    )


def _refuse_update(ctx: SendContext) -> str | None:
    if not any(ctx.event.get(k) for k in ("reason", "priority", "note")):
        return "an update names what changed: reason, priority or note"
    if ctx.event.get("priority") and ctx.event["priority"] not in draft.REQUEST_PRIORITIES:
        return f"priority must be one of {', '.join(draft.REQUEST_PRIORITIES)}"
    return None


def _cancel(ctx: SendContext) -> draft.CancelReferralContent:
    return draft.CancelReferralContent(service_request_id=ctx.input.flow_id, reason=ctx.event.get("reason", ""))


def _thread(ctx: SendContext, index: int) -> str:
    """The thread of careflow's question sent as the pathway's `index`-th message: derived, so the
    workflow stays deterministic and the pathway knows its own threads again; shaped as the UUID v4
    MedCom asks for (from a name-based hash, not from randomness)."""
    derived = uuid.uuid5(QUESTION_THREADS, f"{ctx.input.flow_id}/{index}")
    return str(uuid.UUID(bytes=derived.bytes, version=4))


def _question(ctx: SendContext) -> CareCommunicationContent:
    """A question to the receiver, in a new thread."""
    return CareCommunicationContent(
        communication_id=_thread(ctx, len(ctx.sent)),
        text=ctx.event["text"],
        category=REGARDING_REFERRAL,
        priority=ctx.event.get("priority", "routine"),
        service_request_id=ctx.input.flow_id,
    )


def _refuse_text(ctx: SendContext) -> str | None:
    if not str(ctx.event.get("text", "")).strip():
        return "the message needs a text"
    if ctx.event.get("priority") not in (None, "routine", "asap"):
        return "a question's priority is routine or asap"
    return None


def _is_question(message: InboundMessageSignal, ctx: SendContext) -> bool:
    """A receiver's message that awaits careflow's answer: not its answer in a thread careflow started."""
    ours = {_thread(ctx, i) for i, sent in enumerate(ctx.sent) if sent.step == "ask"}
    return message.thread_id not in ours


def _questions(ctx: SendContext) -> list[InboundMessageSignal]:
    return [m for m in ctx.received if m.kind == MessageKind.CARE_COMMUNICATION and _is_question(m, ctx)]


def _answer(ctx: SendContext) -> CareCommunicationContent:
    """The answer keeps the thread of the receiver's latest question, and replies to it."""
    question = _questions(ctx)[-1]
    return CareCommunicationContent(
        communication_id=question.thread_id or _thread(ctx, len(ctx.sent)),
        text=ctx.event["text"],
        category=REGARDING_REFERRAL,
        service_request_id=ctx.input.flow_id,
        previous_header_id=question.message_header_id,
    )


def _refuse_answer(ctx: SendContext) -> str | None:
    if not _questions(ctx):
        return "the receiver has asked no question about this referral"
    return _refuse_text(ctx)


@workflow.defn(name="MedcomReferralPathway")
class MedcomReferralPathway(PathwayWorkflow):
    """A referral on MedCom's draft referral model (dk-medcom-ref-lm 0.1.0), followed until treatment.

    Sends: the referral (ServiceRequest, new-referral) to the receiving organisation; on events, its
    update (update-referral), its cancellation (cancel-referral, also a coordinator's cancel) and
    questions about it (CareCommunication regarding-referral), each acknowledged under MedCom's resend
    rule. Awaits: the receiver's triage decision (Task) — accepted: the pathway goes on; rejected: it
    escalates with the receiver's reason and ends; forwarded: it follows the referral to the new
    receiver, whose decision it awaits; reprioritised: it awaits the decision still — then the booking
    (Appointment; a rescheduling replaces it), the treatment plan (CarePlan) and the start of treatment.
    Legal deadlines (careflow.deadlines, the version in force at start, re-pinned by a coordinator's
    apply_rules), counted from the referral's receipt: the patient is informed (booking) within 8
    working days; the assessment (treatment plan) within 30 days; on the cancer track the assessment
    starts (booking) within 14 days and treatment within 14 days of the accepted treatment offer (the
    plan). The receiver's questions must be answered within question_answer_deadline.
    Timings: CAREFLOW_PATHWAYS__MEDCOM_REFERRAL__<FIELD>.
    """

    name = "medcom-referral"
    title, title_da = "Referral (MedCom draft model)", "Henvisning (MedCom-udkast)"
    input_model = MedcomReferralInput
    timings_model = MedcomReferralTimings
    parties = (
        Party("requester", "referring organisation", field="referring_sor"),
        Party("performer", "receiving organisation", field="receiving_sor"),
    )
    cancellation = draft.CANCEL_REFERRAL
    track_field = "track"
    treatment_offer_accepted_step = "treatment_plan"
    steps = (
        Send("referral", draft.NEW_REFERRAL, to="performer"),
        AwaitOneOf(
            "triage",
            {
                "accepted": Outcome(draft.TRIAGE, when=draft.Decision.ACCEPT.value),
                "rejected": Outcome(draft.TRIAGE, when=draft.Decision.REJECT.value, escalate=True, end=True),
                "forwarded": Outcome(draft.TRIAGE, when=draft.Decision.FORWARD.value, reassign="performer", again=True),
                "reprioritised": Outcome(draft.TRIAGE, when=draft.Decision.REPRIORITISE.value, again=True),
            },
            sender="performer",
        ),
        AwaitReply("booking", draft.BOOKING, sender="performer", legal=("patient-informed", "cancer-assessment-start")),
        AwaitReply("treatment_plan", MessageKind.TREATMENT_PLAN, sender="performer", legal=("assessment",)),
        AwaitEvent(
            "treatment_started", "treatment-started", title="Treatment started", legal=("cancer-treatment-start",)
        ),
    )
    alongside = (
        OnMessage(
            "question",
            MessageKind.CARE_COMMUNICATION.value,
            sender="performer",
            answer="answer",
            deadline="question_answer_deadline",
            awaits_answer=_is_question,
        ),
        OnEvent(
            "update",
            "update-referral",
            draft.UPDATE_REFERRAL,
            to="performer",
            content=_update,
            title="Referral updated",
            refuse=_refuse_update,
        ),
        OnEvent(
            "cancel_referral",
            "cancel-referral",
            draft.CANCEL_REFERRAL,
            to="performer",
            content=_cancel,
            title="Referral cancelled",
            ends=True,
        ),
        OnEvent(
            "ask",
            "ask-question",
            MessageKind.CARE_COMMUNICATION.value,
            to="performer",
            content=_question,
            title="Question to the receiver",
            refuse=_refuse_text,
        ),
        OnEvent(
            "answer",
            "answer-question",
            MessageKind.CARE_COMMUNICATION.value,
            to="performer",
            content=_answer,
            title="Answer to the receiver's question",
            refuse=_refuse_answer,
        ),
    )

    @classmethod
    def demo_events(cls, rng):  # noqa: ANN001, ANN206
        """Some demo flows ask the receiver a question about the referral (the simulator answers)."""
        if rng.random() < 0.4:
            return [("ask-question", {"text": "Skal patienten møde fastende?", "priority": "routine"})]
        return []

    @classmethod
    def example(cls, rng):  # noqa: ANN001, ANN206
        cancer = rng.random() < 0.25
        reasons = (
            ["Knude i bryst, mistanke om kræft", "Synlig blod i urinen, mistanke om kræft"]
            if cancer
            else ["Brystsmerter ved anstrengelse", "Hjertebanken, udredning", "Åndenød ved gang"]
        )
        return {
            "patient": synthetic_patient(rng),
            "referring_sor": DEMO_GP,
            "receiving_sor": DEMO_HOSPITAL,
            "reason": rng.choice(reasons),
            "priority": "urgent" if cancer else rng.choice(["routine", "routine", "urgent"]),
            "track": "cancer" if cancer else "standard",
        }
